# syntax=docker/dockerfile:1
#
# sse-gateway image: build with the dev toolchain, run with production
# dependencies only, as a non-root user, with node as PID 1.
#
#   docker build -t sse-gateway .
#   docker run --rm -p 8080:8080 -p 9090:9090 \
#     -e REDIS_URL=redis://host.docker.internal:6379 -e JWT_SECRET=... sse-gateway
#
# The base image is pinned by version tag; pin it by digest too
# (node:24.11.1-bookworm-slim@sha256:...) when your registry policy asks for it.
ARG NODE_IMAGE=node:24.11.1-bookworm-slim

# ---- build: compile TypeScript to dist/ ------------------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json tsconfig.demo.json ./
COPY scripts/copy-demo-assets.mjs ./scripts/
COPY src ./src
RUN npm run build

# ---- runtime: production dependencies and the compiled output only ---------
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    NODE_OPTIONS=--enable-source-maps
WORKDIR /app
COPY package.json package-lock.json ./
# No install scripts run (no runtime dependency needs one); the npm cache is
# dropped so it does not end up in the layer.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force
COPY --from=build /app/dist ./dist
# Files stay owned by root and read-only for the app user: the container runs
# with a read-only root filesystem in the Helm chart. UID/GID 1000 is the
# image's "node" user; numeric so Kubernetes can verify runAsNonRoot.
USER 1000:1000
# 8080: public listener (GET /events). 9090: internal listener (/metrics,
# /livez, /readyz); keep it off the load balancer.
EXPOSE 8080 9090
# Liveness only: readiness (/readyz) is the orchestrator's business. No curl
# in the slim image, so node itself asks.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.INTERNAL_PORT||9090)+'/livez').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# Exec form: node is PID 1 and receives SIGTERM itself. The gateway handles
# SIGTERM/SIGINT (readiness off, sessions drained over DRAIN_WINDOW_MS, exit
# 0), and spawns no child processes, so no init is needed to reap zombies.
# Docker's stop timeout (10 s by default) must exceed DRAIN_WINDOW_MS:
# use `docker stop -t 20` or compose's stop_grace_period.
STOPSIGNAL SIGTERM
CMD ["node", "dist/src/main.js"]
