// Tests of the ordered replica set: names map to stable row indexes, and
// misconfiguration fails loudly with the offending name.

import { expect } from "chai";
import { InvalidArgumentError, UnknownReplicaError } from "../../src/core/errors";
import { ReplicaSet } from "../../src/core/replica-set";

describe("replica set - indexes", () => {
  it("maps names to their position and back", () => {
    const set = new ReplicaSet(["eu-west", "us-east", "ap-south-1"]);
    expect(set.size).to.equal(3);
    expect(set.indexOf("us-east")).to.equal(1);
    expect(set.nameOf(2)).to.equal("ap-south-1");
    expect(set.has("eu-west")).to.equal(true);
    expect(set.has("EU-WEST")).to.equal(false);
    expect(set.names).to.deep.equal(["eu-west", "us-east", "ap-south-1"]);
  });

  it("copies the names so that a later change to the input does not move rows", () => {
    const input = ["a", "b"];
    const set = new ReplicaSet(input);
    input.reverse();
    expect(set.names).to.deep.equal(["a", "b"]);
    expect(set.indexOf("a")).to.equal(0);
  });

  it("throws UnknownReplicaError for unknown names and indexes", () => {
    const set = new ReplicaSet(["a", "b"]);
    expect(() => set.indexOf("c")).to.throw(UnknownReplicaError, 'unknown region "c"').with.property("replica", "c");
    expect(() => set.nameOf(2)).to.throw(UnknownReplicaError, "#2");
    expect(() => set.nameOf(-1)).to.throw(UnknownReplicaError);
  });
});

describe("replica set - validation", () => {
  it("requires at least one replica", () => {
    expect(() => new ReplicaSet([])).to.throw(InvalidArgumentError, "replicas: at least one replica is required");
  });

  it("accepts lowercase names of 1 to 32 characters starting with a letter or digit", () => {
    expect(new ReplicaSet(["a", "0", "x".repeat(32), "us-east-1"]).size).to.equal(4);
  });

  it("rejects malformed names, naming them", () => {
    for (const bad of ["", "EU", "-a", "a_b", "a.b", "x".repeat(33), "a b", "a\n"]) {
      expect(() => new ReplicaSet([bad]), JSON.stringify(bad))
        .to.throw(InvalidArgumentError)
        .with.property("field", "replicas");
    }
  });

  it("rejects a name listed twice", () => {
    expect(() => new ReplicaSet(["a", "b", "a"])).to.throw(InvalidArgumentError, '"a" is listed twice');
  });
});
