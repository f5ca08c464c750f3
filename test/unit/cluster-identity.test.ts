// Tests of the cluster identity: a stable 64-bit hash of the ordered replica
// list, so nodes that list the same regions in another order tell each other apart.

import { expect } from "chai";
import fc from "fast-check";
import {
  clusterHash,
  clusterIdentity,
  describeClusterMismatch,
  fnv1a64,
  hashHex,
  sameCluster,
  utf8,
} from "../../src/core/cluster-identity";

const nameArb = fc.stringMatching(/^[a-z0-9][a-z0-9-]{0,11}$/);
const namesArb = fc.uniqueArray(nameArb, { minLength: 1, maxLength: 6 });

describe("cluster identity - hash", () => {
  it("is FNV-1a 64 (published test vectors)", () => {
    expect(fnv1a64(new Uint8Array(0))).to.equal(0xcbf29ce484222325n);
    expect(fnv1a64(utf8("a"))).to.equal(0xaf63dc4c8601ec8cn);
    expect(fnv1a64(utf8("foobar"))).to.equal(0x85944171f73967e8n);
  });

  it("is a fixed value for a given list (stable across versions and processes)", () => {
    const identity = clusterIdentity(["east", "west", "central"]);
    expect(identity.hash).to.equal(clusterHash(["east", "west", "central"]));
    // Pinned: changing the encoding would split a running cluster in two.
    expect(hashHex(identity.hash)).to.equal("dcfd50c306284c14");
    expect(identity.text).to.equal("east,west,central");
    expect(identity.replicas).to.deep.equal(["east", "west", "central"]);
  });

  it("depends on the order of the names", () => {
    expect(clusterHash(["east", "west", "central"])).not.to.equal(clusterHash(["west", "east", "central"]));
    fc.assert(
      fc.property(namesArb, fc.nat(), (names, seed) => {
        const k = seed % names.length;
        const rotated = [...names.slice(k), ...names.slice(0, k)];
        if (k === 0 || rotated.every((n, i) => n === names[i])) return;
        expect(clusterHash(rotated)).not.to.equal(clusterHash(names));
      }),
    );
  });

  it("separates names unambiguously (length prefixes, no joined-string collisions)", () => {
    expect(clusterHash(["ab", "c"])).not.to.equal(clusterHash(["a", "bc"]));
    expect(clusterHash(["a"])).not.to.equal(clusterHash(["a", ""]));
    expect(clusterHash(["a,b"])).not.to.equal(clusterHash(["a", "b"]));
  });

  it("always fits in 64 unsigned bits", () => {
    fc.assert(
      fc.property(fc.array(fc.string(), { maxLength: 5 }), (names) => {
        const hash = clusterHash(names);
        expect(hash >= 0n && hash < 1n << 64n).to.equal(true);
      }),
    );
  });
});

describe("cluster identity - utf8", () => {
  it("encodes like TextEncoder, lone surrogates included", () => {
    const encoder = new TextEncoder();
    const text = fc.oneof(
      fc.string({ unit: "binary" }),
      fc.array(fc.integer({ min: 0, max: 0xffff }), { maxLength: 12 }).map((codes) => String.fromCharCode(...codes)),
    );
    fc.assert(
      fc.property(text, (s) => {
        expect(Buffer.from(utf8(s)).equals(Buffer.from(encoder.encode(s)))).to.equal(true);
      }),
    );
  });
});

describe("cluster identity - comparison", () => {
  it("treats equal lists as the same cluster and any change as another", () => {
    fc.assert(
      fc.property(namesArb, namesArb, (a, b) => {
        const same = a.length === b.length && a.every((n, i) => n === b[i]);
        expect(sameCluster(clusterIdentity(a), clusterIdentity(b))).to.equal(same);
      }),
    );
  });

  it("names both lists when they disagree", () => {
    const local = clusterIdentity(["east", "west", "central"]);
    const remote = clusterIdentity(["west", "east", "central"]);
    const message = describeClusterMismatch(local, remote);
    expect(message).to.contain("[west,east,central]").and.contain("[east,west,central]");
    expect(message).to.contain(hashHex(local.hash)).and.contain(hashHex(remote.hash));
  });
});
