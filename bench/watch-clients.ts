// A separate process holding the WatchBalance streams of the watchers bench, so
// decoding their events does not run on the event loop that times the debits.
// Usage: node watch-clients.js ADDRESS WATCHERS ACCOUNTS CHANNELS TLS_DIR (mTLS as its "reader"). Prints one
// JSON line {"ready":n} once every stream has its first event; on "stop" (or
// stdin closing) cancels them all and prints {"events":n,"changes":n}.

import { LocalGrpcPki } from "../src/devcluster/local-grpc-pki";
import { createInterface } from "node:readline";
import { BalancesClient, type WatchBalanceResponse } from "../src/generated/tally/v1/balances";
import { tlsNameOptions } from "../src/cli/node-clients";

function main(): void {
  const [address, watchersArg, accountsArg, channelsArg, tlsDir] = process.argv.slice(2);
  if (address === undefined || tlsDir === undefined) throw new Error("usage: watch-clients ADDRESS WATCHERS ACCOUNTS CHANNELS TLS_DIR");
  const channelCredentials = LocalGrpcPki.ensure(tlsDir).clientCredentials("reader");
  const watchers = Number(watchersArg ?? "1000");
  const accounts = Number(accountsArg ?? "100");
  const channels = Number(channelsArg ?? "10");
  // Own subchannel pools: each client its own connection, as separate watchers would have.
  const clients = Array.from({ length: channels }, () => new BalancesClient(address, channelCredentials, { ...tlsNameOptions(address), "grpc.use_local_subchannel_pool": 1 }));
  let events = 0;
  let changes = 0;
  let ready = 0;
  const streams = Array.from({ length: watchers }, (_, i) => {
    const client = clients[i % channels]!;
    const stream = client.watchBalance({ accountId: `watched-${i % accounts}`, lowBalanceThreshold: 0n });
    let first = true;
    stream.on("data", (event: WatchBalanceResponse) => {
      if (first) {
        first = false;
        if (++ready === watchers) process.stdout.write(`${JSON.stringify({ ready })}\n`);
        return;
      }
      events++;
      changes += event.coalesced;
    });
    stream.on("error", (error: { code?: number; details?: string }) => {
      if (error.code !== 1) process.stderr.write(`watch ${i} ended: ${error.code} ${error.details}\n`);
    });
    return stream;
  });
  const stop = (): void => {
    for (const s of streams) s.cancel();
    for (const c of clients) c.close();
    process.stdout.write(`${JSON.stringify({ events, changes })}\n`);
    process.exit(0);
  };
  const input = createInterface({ input: process.stdin });
  input.on("line", (line) => {
    if (line.trim() === "stop") stop();
  });
  input.on("close", stop);
}

main();
