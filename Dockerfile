# A small image with korvet's static binary, running as a non-root user.
#   docker build -t korvet:latest .
#   docker run --rm -p 9092:9092 -p 8080:8080 -e KORVET_REDIS_URI=redis://host:6379 korvet:latest
FROM rust:1-bookworm AS build
RUN apt-get update -qq && apt-get install -y -qq musl-tools >/dev/null && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
RUN cargo build --release --locked --target x86_64-unknown-linux-musl --bin korvet \
 && cp target/x86_64-unknown-linux-musl/release/korvet /korvet

FROM scratch
COPY --from=build /korvet /korvet
# 65532 is the conventional "nonroot" user of distroless images.
USER 65532:65532
EXPOSE 9092 8080
ENTRYPOINT ["/korvet"]
CMD ["serve"]
