package webhook

import (
	"strings"
	"testing"
	"time"
)

// The vector is the Standard Webhooks specification's own example, checked
// with openssl rather than with this package:
//
//	key=$(echo -n MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw | base64 -d | xxd -p -c 256)
//	printf '%s' 'msg_p5jXN8AQM9LWM0D4loKWxJek.1614265330.{"test": 2432232314}' |
//	  openssl dgst -sha256 -mac HMAC -macopt hexkey:$key -binary | base64
//	# g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=
//
// and the same with the key "second-secret-of-24-bytes!":
//
//	# 3nn3Cn3YhUQLxK1H8EI+4miO2TCA0gGn8IREDlLHyDI=
func TestSignatureVector(t *testing.T) {
	first := mustSecret(t, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	second := mustSecret(t, "whsec_c2Vjb25kLXNlY3JldC1vZi0yNC1ieXRlcyE=")
	body := []byte(`{"test": 2432232314}`)
	ts := time.Unix(1614265330, 0)
	cases := []struct {
		secrets []Secret
		want    string
	}{
		{[]Secret{first}, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="},
		{[]Secret{first, second}, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE= v1,3nn3Cn3YhUQLxK1H8EI+4miO2TCA0gGn8IREDlLHyDI="},
	}
	for _, c := range cases {
		signer, err := NewSigner(c.secrets...)
		if err != nil {
			t.Fatal(err)
		}
		if got := signer.Signature("msg_p5jXN8AQM9LWM0D4loKWxJek", ts, body); got != c.want {
			t.Errorf("%d secrets: got %q, want %q", len(c.secrets), got, c.want)
		}
	}
}

func mustSecret(t *testing.T, s string) Secret {
	t.Helper()
	secret, err := ParseSecret(s)
	if err != nil {
		t.Fatalf("ParseSecret(%q): %v", s, err)
	}
	return secret
}

func TestParseSecretRefuses(t *testing.T) {
	cases := map[string]string{
		"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw":                  "must start with whsec_",
		"whsec_not base64!":                                 "base64",
		"whsec_c2hvcnQ=":                                    "24 to 64 bytes, got 5",
		"whsec_" + strings.Repeat("QUFB", 22):               "24 to 64 bytes, got 66",
		"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" + "\x00==": "base64",
	}
	for in, want := range cases {
		_, err := ParseSecret(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseSecret(%q): got %v, want an error saying %q", in, err, want)
			continue
		}
		if rest := strings.TrimPrefix(in, "whsec_"); len(rest) > 4 && strings.Contains(err.Error(), rest) {
			t.Errorf("ParseSecret(%q): the error %q repeats the secret", in, err)
		}
	}
	if _, err := NewSigner(); err == nil {
		t.Error("NewSigner(): got no error, want one for no secret")
	}
	if s := mustSecret(t, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").String(); strings.Contains(s, "MfKQ") {
		t.Errorf("Secret.String() = %q shows the secret", s)
	}
}
