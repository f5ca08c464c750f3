# Tally node image: one regional node (`tally serve`), configured entirely by
# TALLY_* environment variables (see `tally serve --help` and docker-compose.yml).
#
#   docker build -t tally .
#   docker run --rm -e TALLY_REGION=east -e TALLY_NATS_URL=nats://nats-east:4222 tally

# ---- build: full dependencies, compile TypeScript ---------------------------
FROM node:20-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY proto ./proto
COPY src ./src
RUN npm run build

# ---- runtime: production dependencies, compiled code and the protos ---------
FROM node:20-slim
WORKDIR /app
ENV NODE_ENV=production \
    TALLY_GRPC_ADDR=0.0.0.0:50051 \
    TALLY_METRICS_HOST=0.0.0.0 \
    TALLY_METRICS_PORT=9464
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
# gRPC server reflection serves the contract from proto/ (dist/src/server/../../../proto).
COPY proto ./proto
USER node
# gRPC, /metrics
EXPOSE 50051 9464
# Other verbs stay reachable: `docker run tally status`.
ENTRYPOINT ["node", "dist/src/cli/main.js"]
CMD ["serve"]
