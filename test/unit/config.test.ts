// Node options (src/app/config.ts): flags over environment over defaults, and
// every bad value is a ConfigError naming the flag and its variable.

import { expect } from "chai";
import fc from "fast-check";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createUserSeed } from "../../src/security/nats-credentials";
import { Mode, STRICT_DEFAULT } from "../../src/core/policy";
import {
  addressOption,
  booleanOption,
  ConfigError,
  DEFAULT_POSTGRES,
  defaultPolicyOption,
  insecureOption,
  integerOption,
  natsSecurityOption,
  nodeTunables,
  optionSource,
  postgresOption,
  postgresSecurityOption,
  regionsOption,
  streamReplicasOption,
  urlListOption,
  urlOption,
  type Option,
} from "../../src/app/config";
import { DEFAULT_NODE_CONFIG } from "../../src/node/node-config";

type Source = Parameters<typeof integerOption>[0];

/** Reads options from flags only. */
function flags(values: Readonly<Record<string, string>>): Source {
  return optionSource(values, {});
}

const NONE: Source = () => undefined;
const PORT: Option = { flag: "metrics-port", env: "TALLY_METRICS_PORT" };

function configError(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    if (error instanceof ConfigError) return error.message;
    throw error;
  }
  throw new Error("expected a ConfigError");
}

/** The message names the option as a flag and as a variable. */
function expectNamed(message: string, flag: string, env: string): void {
  expect(message).to.include(`--${flag}`);
  expect(message).to.include(env);
}

describe("config - sources", () => {
  it("config - a flag overrides the variable, which overrides the default", () => {
    const read = optionSource({ "metrics-port": "9000" }, { TALLY_METRICS_PORT: "9100", TALLY_GRPC_ADDR: "0.0.0.0:7000" });
    expect(integerOption(read, PORT, 1, 0, 65_535)).to.equal(9000);
    expect(addressOption(read, { flag: "grpc", env: "TALLY_GRPC_ADDR" }, "127.0.0.1:50051")).to.equal("0.0.0.0:7000");
    expect(addressOption(read, { flag: "admin", env: "TALLY_ADMIN_ADDR" }, "127.0.0.1:50052")).to.equal("127.0.0.1:50052");
  });

  it("config - an empty variable counts as unset and a boolean flag as 1", () => {
    const read = optionSource({ "spread-grants": true }, { TALLY_METRICS_PORT: "" });
    expect(integerOption(read, PORT, 9464, 0, 65_535)).to.equal(9464);
    expect(booleanOption(read, { flag: "spread-grants", env: "TALLY_SPREAD_GRANTS" })).to.equal(true);
  });
});

describe("config - integers", () => {
  const bad: ReadonlyArray<[string, string, RegExp]> = [
    ["non-numeric", "abc", /must be an integer; got "abc"/],
    ["non-integer", "1.5", /must be an integer; got "1.5"/],
    ["empty after trimming", " ", /must be an integer/],
    ["above the range", "70000", /must be between 0 and 65535; got 70000/],
    ["below the range", "-1", /must be between 0 and 65535; got -1/],
    ["beyond a safe integer", "99999999999999999999", /must be between 0 and 65535/],
  ];
  for (const [what, raw, reason] of bad) {
    it(`config - an integer ${what} is a ConfigError naming the flag and variable`, () => {
      const message = configError(() => integerOption(flags({ "metrics-port": raw }), PORT, 9464, 0, 65_535));
      expectNamed(message, "metrics-port", "TALLY_METRICS_PORT");
      expect(message).to.match(reason);
    });
  }

  it("config - an unset integer takes its default", () => {
    expect(integerOption(NONE, PORT, 9464, 0, 65_535)).to.equal(9464);
  });

  it("config - every integer in range is accepted and every one outside is refused naming the option", () => {
    fc.assert(
      fc.property(fc.integer({ min: -1_000_000, max: 1_000_000 }), (value) => {
        const read = flags({ "metrics-port": String(value) });
        if (value >= 0 && value <= 65_535) expect(integerOption(read, PORT, 1, 0, 65_535)).to.equal(value);
        else expectNamed(configError(() => integerOption(read, PORT, 1, 0, 65_535)), "metrics-port", "TALLY_METRICS_PORT");
      }),
    );
  });

  it("config - a boolean other than 1/true/0/false is a ConfigError naming the flag and variable", () => {
    const option = { flag: "spread-grants", env: "TALLY_SPREAD_GRANTS" };
    expect(booleanOption(flags({ "spread-grants": "false" }), option)).to.equal(false);
    expect(booleanOption(NONE, option)).to.equal(false);
    expectNamed(configError(() => booleanOption(flags({ "spread-grants": "yes" }), option)), "spread-grants", "TALLY_SPREAD_GRANTS");
  });
});

describe("config - regions", () => {
  it("config - the region list keeps its order and trims names; by default it is the region alone", () => {
    expect(regionsOption("west", "east, west ,central")).to.deep.equal({ region: "west", regions: ["east", "west", "central"] });
    expect(regionsOption("east", undefined)).to.deep.equal({ region: "east", regions: ["east"] });
  });

  it("config - a missing region is a ConfigError naming the flag and variable", () => {
    expectNamed(configError(() => regionsOption(undefined, "east")), "region", "TALLY_REGION");
    expectNamed(configError(() => regionsOption("", "east")), "region", "TALLY_REGION");
  });

  it("config - a bad region name is a ConfigError naming the flag and variable", () => {
    for (const name of ["East", "1east", "east_1", "e".repeat(33)]) {
      const message = configError(() => regionsOption(name, undefined));
      expectNamed(message, "region", "TALLY_REGION");
      expect(message).to.include(`"${name}"`);
    }
  });

  it("config - a region named twice is a ConfigError naming the flag, the variable and the name", () => {
    const message = configError(() => regionsOption("east", "east,east,central"));
    expectNamed(message, "regions", "TALLY_REGIONS");
    expect(message).to.include('"east" twice');
  });

  it("config - a bad name in the list is a ConfigError naming the flag, the variable and the name", () => {
    const message = configError(() => regionsOption("east", "east,We st"));
    expectNamed(message, "regions", "TALLY_REGIONS");
    expect(message).to.include('"We st"');
    expectNamed(configError(() => regionsOption("east", "east,,west")), "regions", "TALLY_REGIONS");
  });

  it("config - a region missing from the list is a ConfigError naming both flags and variables", () => {
    const message = configError(() => regionsOption("central", "east,west"));
    expectNamed(message, "region", "TALLY_REGION");
    expectNamed(message, "regions", "TALLY_REGIONS");
    expect(message).to.include("central");
  });
});

describe("config - addresses and URLs", () => {
  const GRPC: Option = { flag: "grpc", env: "TALLY_GRPC_ADDR" };
  for (const bad of ["localhost", "localhost:", ":50051", "host:99999", "host:port"]) {
    it(`config - address "${bad}" is a ConfigError naming the flag and variable`, () => {
      const message = configError(() => addressOption(flags({ grpc: bad }), GRPC, "127.0.0.1:50051"));
      expectNamed(message, "grpc", "TALLY_GRPC_ADDR");
      expect(message).to.include(`"${bad}"`);
    });
  }

  it("config - host:port addresses are accepted, port 0 included", () => {
    expect(addressOption(flags({ grpc: "0.0.0.0:0" }), GRPC, "x:1")).to.equal("0.0.0.0:0");
    expect(addressOption(flags({ grpc: "[::1]:65535" }), GRPC, "x:1")).to.equal("[::1]:65535");
  });

  const NATS: Option = { flag: "nats", env: "TALLY_NATS_URL" };
  it("config - a URL with another scheme is a ConfigError naming the flag, the variable and the schemes", () => {
    const message = configError(() => urlOption(flags({ nats: "http://127.0.0.1:4222" }), NATS, undefined, ["nats", "tls"]));
    expectNamed(message, "nats", "TALLY_NATS_URL");
    expect(message).to.include("nats or tls");
  });

  it("config - a value that is no URL is a ConfigError naming the flag and variable", () => {
    expectNamed(configError(() => urlOption(flags({ nats: "127.0.0.1 4222" }), NATS, undefined, ["nats"])), "nats", "TALLY_NATS_URL");
  });

  it("config - a URL with an allowed scheme is kept, and no value and no default is undefined", () => {
    expect(urlOption(flags({ nats: "tls://nats.example:4222" }), NATS, undefined, ["nats", "tls"])).to.equal("tls://nats.example:4222");
    expect(urlOption(NONE, NATS, undefined, ["nats"])).to.equal(undefined);
  });

  it("config - a region's NATS servers as a comma-separated list: each part checked, empty parts refused", () => {
    expect(urlListOption(flags({ nats: "nats://a:4222, nats://b:4222,nats://c:4222" }), NATS, "nats://x:1", ["nats"])).to.equal("nats://a:4222,nats://b:4222,nats://c:4222");
    expect(urlListOption(NONE, NATS, "nats://127.0.0.1:4222", ["nats"])).to.equal("nats://127.0.0.1:4222");
    expectNamed(configError(() => urlListOption(flags({ nats: "nats://a:4222,http://b:4222" }), NATS, "nats://x:1", ["nats"])), "nats", "TALLY_NATS_URL");
    expect(configError(() => urlListOption(flags({ nats: "nats://a:4222,,nats://b:4222" }), NATS, "nats://x:1", ["nats"]))).to.include("empty entry");
  });

  it("config - stream replicas are 1, 3 or 5; an even or out-of-range count names the flag and variable", () => {
    expect(streamReplicasOption(NONE)).to.equal(1);
    expect(streamReplicasOption(flags({ "stream-replicas": "3" }))).to.equal(3);
    expect(streamReplicasOption(optionSource({}, { TALLY_STREAM_REPLICAS: "5" }))).to.equal(5);
    for (const bad of ["2", "4", "0", "7", "three"]) {
      expectNamed(configError(() => streamReplicasOption(flags({ "stream-replicas": bad }))), "stream-replicas", "TALLY_STREAM_REPLICAS");
    }
  });

  it("config - Postgres is off without a URL, and a non-Postgres URL names the flag and variable", () => {
    expect(postgresOption(NONE)).to.equal(undefined);
    expect(postgresOption(flags({ postgres: "postgres://u@h/db" }))).to.deep.equal({ url: "postgres://u@h/db", ...DEFAULT_POSTGRES });
    expectNamed(configError(() => postgresOption(flags({ postgres: "mysql://u@h/db" }))), "postgres", "TALLY_POSTGRES_URL");
    expectNamed(configError(() => postgresOption(flags({ postgres: "postgres://u@h/db", "pg-pool-size": "0" }))), "pg-pool-size", "TALLY_PG_POOL_SIZE");
  });
});

describe("config - default policy", () => {
  it("config - the default policy is STRICT", () => {
    expect(defaultPolicyOption(NONE)).to.deep.equal(STRICT_DEFAULT);
  });

  it("config - an overdraft default carries its limit", () => {
    expect(defaultPolicyOption(flags({ "default-mode": "overdraft", "default-overdraft": "500" }))).to.deep.equal({
      mode: Mode.Overdraft,
      overdraftLimit: 500n,
      lowWaterMark: 0n,
    });
  });

  it("config - an unknown mode is a ConfigError naming the flag and variable", () => {
    expectNamed(configError(() => defaultPolicyOption(flags({ "default-mode": "lenient" }))), "default-mode", "TALLY_DEFAULT_MODE");
  });

  it("config - a negative, non-numeric or out-of-range limit is a ConfigError naming the flag and variable", () => {
    for (const limit of ["-5", "ten", "9223372036854775808"]) {
      const message = configError(() => defaultPolicyOption(flags({ "default-mode": "overdraft", "default-overdraft": limit })));
      expectNamed(message, "default-overdraft", "TALLY_DEFAULT_OVERDRAFT");
    }
  });
});

describe("config - node tunables", () => {
  it("config - with nothing set the tunables are the node defaults", () => {
    const { placeStreamsByRegion, ...defaults } = DEFAULT_NODE_CONFIG;
    expect(placeStreamsByRegion).to.equal(false);
    expect(nodeTunables(NONE)).to.deep.equal(defaults);
  });

  it("config - each tunable reads its own flag", () => {
    const tunables = nodeTunables(flags({ "max-commit-slots": "17", "rights-wait-ms": "5", "spread-grants": "1" }));
    expect(tunables.maxCommitSlots).to.equal(17);
    expect(tunables.defaultRightsWaitMs).to.equal(5);
    expect(tunables.spreadGrants).to.equal(true);
    expect(tunables.maxRightsWaitMs).to.equal(DEFAULT_NODE_CONFIG.maxRightsWaitMs);
  });

  it("config - a default wait above the maximum wait is a ConfigError naming both flags", () => {
    const message = configError(() => nodeTunables(flags({ "rights-wait-ms": "300", "max-rights-wait-ms": "200" })));
    expect(message).to.include("--rights-wait-ms");
    expect(message).to.include("--max-rights-wait-ms");
  });

  it("config - a tunable out of range is a ConfigError naming its flag and variable", () => {
    expectNamed(configError(() => nodeTunables(flags({ "status-interval-ms": "10" }))), "status-interval-ms", "TALLY_STATUS_INTERVAL_MS");
  });

  it("config - --standby takes part in the writer lease; its timing follows --lease-ttl-ms", () => {
    expect(nodeTunables(NONE).writerLease).to.equal(undefined);
    expect(nodeTunables(flags({ standby: "1" })).writerLease).to.deep.equal({ ttlMs: 10_000, renewAfterMs: 3_000, marginMs: 2_000 });
    expect(nodeTunables(flags({ standby: "1", "lease-ttl-ms": "2000" })).writerLease).to.deep.equal({ ttlMs: 2_000, renewAfterMs: 600, marginMs: 400 });
    expectNamed(configError(() => nodeTunables(flags({ standby: "1", "lease-ttl-ms": "100" }))), "lease-ttl-ms", "TALLY_LEASE_TTL_MS");
  });
});

describe("config - NATS and Postgres security", () => {
  const dir = mkdtempSync(join(tmpdir(), "tally-config-sec-"));
  const ca = join(dir, "ca.crt");
  const seed = join(dir, "node.nk");
  const notSeed = join(dir, "not-a-seed.nk");
  writeFileSync(ca, "-----BEGIN CERTIFICATE-----\n");
  writeFileSync(seed, `${createUserSeed()}\n`);
  writeFileSync(notSeed, "hello\n");
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("config - NATS needs a CA and an nkey file unless --insecure, each named with its variable", () => {
    expectNamed(configError(() => natsSecurityOption(NONE, false)), "nats-ca", "TALLY_NATS_CA");
    expectNamed(configError(() => natsSecurityOption(flags({ "nats-ca": ca }), false)), "nats-nkey", "TALLY_NATS_NKEY");
    expect(natsSecurityOption(flags({ "nats-ca": ca, "nats-nkey": seed }), false)).to.deep.equal({ caFile: ca, nkeyFile: seed });
    expect(natsSecurityOption(NONE, true)).to.equal(undefined);
  });

  it("config - an unreadable file, a file with no nkey seed, or half the NATS credentials with --insecure are ConfigErrors", () => {
    expectNamed(configError(() => natsSecurityOption(flags({ "nats-ca": join(dir, "absent.crt"), "nats-nkey": seed }), false)), "nats-ca", "TALLY_NATS_CA");
    expectNamed(configError(() => natsSecurityOption(flags({ "nats-ca": ca, "nats-nkey": notSeed }), false)), "nats-nkey", "TALLY_NATS_NKEY");
    // --insecure never drops credentials that are given: a partial set is still an error.
    expect(configError(() => natsSecurityOption(flags({ "nats-ca": ca }), true))).to.contain("--nats-nkey");
    expect(natsSecurityOption(flags({ "nats-ca": ca, "nats-nkey": seed }), true)).to.deep.equal({ caFile: ca, nkeyFile: seed });
    expectNamed(configError(() => insecureOption(flags({ insecure: "maybe" }))), "insecure", "TALLY_INSECURE");
  });

  it("config - Postgres needs its CA and an owner role unless --insecure; owner and reader URLs must name a role and need --postgres", () => {
    const settler = "postgres://tally_settler:pw@db/tally";
    expectNamed(configError(() => postgresSecurityOption(NONE, false, settler)), "postgres-ca", "TALLY_POSTGRES_CA");
    expect(postgresSecurityOption(flags({ "postgres-ca": ca, "postgres-owner-url": "postgres://tally_owner:pw@db/tally" }), false, settler)).to.deep.equal({
      ownerUrl: "postgres://tally_owner:pw@db/tally",
      caFile: ca,
    });
    expect(postgresSecurityOption(NONE, true, settler)).to.deep.equal({});
    expectNamed(configError(() => postgresSecurityOption(flags({ "postgres-ca": ca }), false, settler)), "postgres-owner-url", "TALLY_POSTGRES_OWNER_URL");
    expectNamed(configError(() => postgresSecurityOption(flags({ "postgres-ca": ca, "postgres-reader-url": "postgres://db/tally" }), false, settler)), "postgres-reader-url", "TALLY_POSTGRES_READER_URL");
    expectNamed(configError(() => postgresSecurityOption(flags({ "postgres-owner-url": "postgres://o@db/tally" }), false, undefined)), "postgres-owner-url", "TALLY_POSTGRES_OWNER_URL");
    expect(configError(() => postgresSecurityOption(flags({ "postgres-ca": ca }), false, `${settler}?sslmode=disable`))).to.contain("--postgres-ca");
    // A CA with no settlement configured is ignored (shared environments set it for every node).
    expect(postgresSecurityOption(flags({ "postgres-ca": ca }), false, undefined)).to.deep.equal({});
  });
});
