# syntax=docker/dockerfile:1
#
# The sign-in token service as a small, non-root image:
#
#   docker build --build-arg VERSION=$(git describe --tags --always) -t signin-tokens .
#   docker run -p 8080:8080 signin-tokens
#
# Started bare, it keeps SQLite and generated development keys in /data (a
# volume). In production give it SECRET_KEYS, SIGNING_KEY_FILE and a
# PostgreSQL DATABASE_URL: it then writes nothing to disk, so the container
# runs with a read-only root filesystem (docker run --read-only, or
# readOnlyRootFilesystem in Kubernetes; see deploy/).
#
# cmd/server/image_test.go builds the binary from the files .dockerignore
# leaves, with the exact command of the build stage below, and runs what this
# image runs, so CI checks it without a Docker engine.

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=devel
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/server ./cmd/server
# An empty data directory the runtime user owns, for the volume below.
RUN mkdir -p /out/data

# Nothing but the binary, the CA certificates it needs to call a user
# directory over HTTPS, and the data directory: no shell, no package manager.
FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/server /server
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
ENV HTTP_ADDR=:8080 DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 8080
# The binary checks itself: no shell and no curl in the image.
HEALTHCHECK --interval=10s --timeout=5s --start-period=15s --retries=3 CMD ["/server", "healthcheck"]
ENTRYPOINT ["/server"]
CMD ["serve"]
