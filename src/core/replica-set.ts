// The fixed, ordered set of replicas (regions). A replica's index is its row in
// every escrow counter, so the order must be identical on every node.

import { InvalidArgumentError, UnknownReplicaError } from "./errors";

const REPLICA_NAME = /^[a-z0-9][a-z0-9-]{0,31}$/;

export class ReplicaSet {
  readonly names: readonly string[];
  private readonly indexByName: ReadonlyMap<string, number>;

  constructor(names: readonly string[]) {
    if (names.length === 0) throw new InvalidArgumentError("replicas", "at least one replica is required");
    const seen = new Map<string, number>();
    names.forEach((name, index) => {
      if (!REPLICA_NAME.test(name)) {
        throw new InvalidArgumentError("replicas", `"${name}" must match ${REPLICA_NAME.source}`);
      }
      if (seen.has(name)) throw new InvalidArgumentError("replicas", `"${name}" is listed twice`);
      seen.set(name, index);
    });
    this.names = [...names];
    this.indexByName = seen;
  }

  get size(): number {
    return this.names.length;
  }

  indexOf(name: string): number {
    const index = this.indexByName.get(name);
    if (index === undefined) throw new UnknownReplicaError(name);
    return index;
  }

  has(name: string): boolean {
    return this.indexByName.has(name);
  }

  nameOf(index: number): string {
    const name = this.names[index];
    if (name === undefined) throw new UnknownReplicaError(`#${index}`);
    return name;
  }
}
