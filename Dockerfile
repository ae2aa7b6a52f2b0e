# Dockerfile — builds pgfold on Debian bookworm (the same -dev packages as
# scripts/install-deps.sh) and runs it with /etc/pgfold/pgfold.ini.
# docker-compose.yml puts it in front of postgres:15 and redis:7.
#
#   docker build -t pgfold .
#   docker run --rm -p 6432:6432 -p 6433:6433 pgfold --backend HOST:5432 ...
#
# Arguments after the image name replace CMD; keep "-c /etc/pgfold/pgfold.ini"
# and the 0.0.0.0 listen/admin addresses when overriding it.

FROM debian:bookworm AS build
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential pkg-config \
      libuv1-dev libpq-dev libhiredis-dev libpg-query-dev libprotobuf-c-dev \
      libinih-dev libhttp-parser-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN make -j"$(nproc)" all \
 && build/pgfold --version

FROM debian:bookworm-slim
ARG DEBIAN_FRONTEND=noninteractive
# Runtime libraries of the -dev packages above, and curl for the healthcheck.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libuv1 libpq5 libhiredis0.14 libpg-query1504.0 libprotobuf-c1 libinih1 \
      libhttp-parser2.9 curl ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --no-create-home --shell /usr/sbin/nologin pgfold
COPY --from=build /src/build/pgfold /usr/local/bin/pgfold
COPY conf/pgfold.ini /etc/pgfold/pgfold.ini
USER pgfold
EXPOSE 6432 6433
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD curl -fsS -o /dev/null http://127.0.0.1:6433/health || exit 1
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/pgfold"]
CMD ["-c", "/etc/pgfold/pgfold.ini", "--listen", "0.0.0.0:6432", "--admin", "0.0.0.0:6433"]
