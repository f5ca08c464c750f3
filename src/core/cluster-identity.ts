// The identity of a cluster's replica layout: the ordered replica list fixes
// which row of every escrow counter belongs to which region, so two nodes that
// list the same names in a different order must never exchange slots. Every
// inter-node message carries this identity; receivers compare it with their
// own. Pure: a 64-bit FNV-1a over an unambiguous encoding of the list.

const FNV64_OFFSET = 0xcbf29ce484222325n;
const FNV64_PRIME = 0x100000001b3n;
const MASK64 = (1n << 64n) - 1n;
/** Versions the encoding, so a future change of it cannot collide with this one. */
const DOMAIN = "tally.cluster.v1";

export interface ClusterIdentity {
  /** FNV-1a 64 of the encoded list (an unsigned 64-bit value). */
  readonly hash: bigint;
  /** Replica names in index order. */
  readonly replicas: readonly string[];
  /** Human-readable form for messages and logs, e.g. "east,west,central". */
  readonly text: string;
}

/** FNV-1a 64 over bytes, as an unsigned 64-bit bigint. */
export function fnv1a64(bytes: Uint8Array, seed: bigint = FNV64_OFFSET): bigint {
  let hash = seed;
  for (const byte of bytes) hash = ((hash ^ BigInt(byte)) * FNV64_PRIME) & MASK64;
  return hash;
}

/** UTF-8 bytes of a string (lone surrogates become U+FFFD, as TextEncoder does). */
export function utf8(text: string): Uint8Array {
  const out: number[] = [];
  for (const char of text) {
    let code = char.codePointAt(0) ?? 0xfffd;
    if (code >= 0xd800 && code <= 0xdfff) code = 0xfffd;
    if (code < 0x80) out.push(code);
    else if (code < 0x800) out.push(0xc0 | (code >> 6), 0x80 | (code & 0x3f));
    else if (code < 0x10000) out.push(0xe0 | (code >> 12), 0x80 | ((code >> 6) & 0x3f), 0x80 | (code & 0x3f));
    else out.push(0xf0 | (code >> 18), 0x80 | ((code >> 12) & 0x3f), 0x80 | ((code >> 6) & 0x3f), 0x80 | (code & 0x3f));
  }
  return Uint8Array.from(out);
}

/**
 * The hash of an ordered replica list: FNV-1a 64 over the domain tag, then for
 * each name its UTF-8 length (4 bytes big endian) and bytes. Length prefixes
 * make the encoding injective ("ab","c" and "a","bc" differ); order matters.
 */
export function clusterHash(replicas: readonly string[]): bigint {
  let hash = fnv1a64(utf8(DOMAIN));
  for (const name of replicas) {
    const bytes = utf8(name);
    const length = bytes.length;
    hash = fnv1a64(Uint8Array.of((length >>> 24) & 0xff, (length >>> 16) & 0xff, (length >>> 8) & 0xff, length & 0xff), hash);
    hash = fnv1a64(bytes, hash);
  }
  return hash;
}

/** The human-readable form of a replica list: names joined by commas. */
export function clusterText(replicas: readonly string[]): string {
  return replicas.join(",");
}

export function clusterIdentity(replicas: readonly string[]): ClusterIdentity {
  const names = [...replicas];
  return { hash: clusterHash(names), replicas: names, text: clusterText(names) };
}

/** True when both identities name the same replicas in the same order. */
export function sameCluster(a: ClusterIdentity, b: ClusterIdentity): boolean {
  return a.hash === b.hash && a.replicas.length === b.replicas.length && a.replicas.every((name, k) => name === b.replicas[k]);
}

/** Explains a disagreement, naming both lists. */
export function describeClusterMismatch(local: ClusterIdentity, remote: ClusterIdentity): string {
  return (
    `cluster identity mismatch: sender has replicas [${remote.text}] (${hashHex(remote.hash)}), ` +
    `this node has [${local.text}] (${hashHex(local.hash)}); replica order fixes the slot layout, so every node must list the same regions in the same order`
  );
}

export function hashHex(hash: bigint): string {
  return hash.toString(16).padStart(16, "0");
}
