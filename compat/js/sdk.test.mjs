// Clerk's JavaScript Backend SDK against this service, changing only apiUrl.
// BASE_URL and SECRET_KEY come from the Go test that starts the server.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createClerkClient } from '@clerk/backend';

const baseUrl = process.env.BASE_URL;
const secretKey = process.env.SECRET_KEY;
if (!baseUrl || !secretKey) throw new Error('BASE_URL and SECRET_KEY must be set');

const clerk = createClerkClient({ secretKey, apiUrl: baseUrl });

async function apiError(promise) {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  assert.fail('the call succeeded; an API error was expected');
}

test('create with the default expiry', async () => {
  const tok = await clerk.signInTokens.createSignInToken({ userId: 'user_js' });
  assert.match(tok.id, /^sit_[0-9A-Za-z]{27}$/);
  assert.equal(tok.userId, 'user_js');
  assert.equal(tok.status, 'pending');
  assert.equal(tok.token.split('.').length, 3);
  assert.equal(typeof tok.createdAt, 'number');
  assert.equal(tok.createdAt, tok.updatedAt);
  const claims = JSON.parse(Buffer.from(tok.token.split('.')[1], 'base64url'));
  assert.equal(claims.exp - claims.iat, 30 * 24 * 3600);
});

test('create with a custom expiry, then revoke', async () => {
  const tok = await clerk.signInTokens.createSignInToken({ userId: 'user_js', expiresInSeconds: 600 });
  const claims = JSON.parse(Buffer.from(tok.token.split('.')[1], 'base64url'));
  assert.equal(claims.exp - claims.iat, 600);
  const revoked = await clerk.signInTokens.revokeSignInToken(tok.id);
  assert.equal(revoked.id, tok.id);
  assert.equal(revoked.status, 'revoked');
  assert.equal(revoked.token, undefined);

  const again = await apiError(clerk.signInTokens.revokeSignInToken(tok.id));
  assert.equal(again.status, 400);
  assert.equal(again.errors[0].code, 'sign_in_token_cannot_be_revoked_code');
  assert.ok(again.errors[0].longMessage);
  assert.ok(again.clerkTraceId);
});

test('errors arrive as ClerkAPIResponseError with their codes', async () => {
  // Each call starts only when its turn comes, so no rejection goes unawaited.
  const cases = [
    [() => clerk.signInTokens.revokeSignInToken('sit_unknown'), 404, 'resource_not_found'],
    [() => clerk.signInTokens.createSignInToken({}), 422, 'form_param_missing'],
    [() => clerk.signInTokens.createSignInToken({ userId: 'u', expiresInSeconds: 0 }), 422, 'form_param_value_invalid'],
    [() => createClerkClient({ secretKey: 'sk_test_wrong_key_wrong', apiUrl: baseUrl })
      .signInTokens.createSignInToken({ userId: 'u' }), 401, 'clerk_key_invalid'],
  ];
  for (const [call, status, code] of cases) {
    const err = await apiError(call());
    assert.equal(err.status, status, code);
    assert.equal(err.errors[0].code, code);
    assert.ok(err.clerkTraceId, 'trace id');
  }
  const param = await apiError(clerk.signInTokens.createSignInToken({}));
  assert.equal(param.errors[0].meta.paramName, 'user_id');
});

// Actor tokens, through clerkClient.actorTokens, with the default /v1 and
// with no API version in the path at all.
for (const [name, client] of [
  ['/v1', clerk],
  ['no version', createClerkClient({ secretKey, apiUrl: baseUrl, apiVersion: '' })],
]) {
  test(`actor tokens (${name}): create with Clerk's defaults, then revoke`, async () => {
    const tok = await client.actorTokens.create({ userId: 'user_js', actor: { sub: 'user_support', team: 'care' } });
    assert.match(tok.id, /^act_[0-9A-Za-z]{27}$/);
    assert.equal(tok.userId, 'user_js');
    assert.equal(tok.status, 'pending');
    assert.deepEqual(tok.actor, { sub: 'user_support', team: 'care' });
    const claims = JSON.parse(Buffer.from(tok.token.split('.')[1], 'base64url'));
    assert.equal(claims.st, 'actor_token');
    assert.deepEqual(claims.act, { sub: 'user_support' });
    assert.equal(claims.exp - claims.iat, 3600);

    const revoked = await client.actorTokens.revoke(tok.id);
    assert.equal(revoked.id, tok.id);
    assert.equal(revoked.status, 'revoked');
    assert.equal(revoked.token, undefined);
    const again = await apiError(client.actorTokens.revoke(tok.id));
    assert.equal(again.status, 400);
    assert.equal(again.errors[0].code, 'actor_token_cannot_be_revoked_code');
    const missing = await apiError(client.actorTokens.create({ userId: 'user_js' }));
    assert.equal(missing.status, 422);
    assert.equal(missing.errors[0].code, 'form_param_missing');
    assert.equal(missing.errors[0].meta.paramName, 'actor');
  });
}
