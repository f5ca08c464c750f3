// Order-independent digest of a replica's row across all accounts, kept up to
// date incrementally: XOR of a 64-bit hash per non-zero slot. Two nodes that
// applied the same updates of a row hold the same digest, whatever the order.

/** Two 32-bit FNV-1a lanes over (account, column, value). Zero values hash to 0. */
export function slotHash(accountId: string, column: number, value: bigint): bigint {
  if (value === 0n) return 0n;
  let a = 0x811c9dc5;
  let b = 0x01000193 ^ 0x5bd1e995;
  const mix = (code: number): void => {
    a = Math.imul(a ^ code, 0x01000193) >>> 0;
    b = Math.imul(b ^ code, 0x5bd1e995) >>> 0;
  };
  for (let k = 0; k < accountId.length; k++) mix(accountId.charCodeAt(k));
  mix(0x100 + column);
  let rest = value;
  while (rest > 0n) {
    mix(Number(rest & 0xffffn));
    rest >>= 16n;
  }
  return (BigInt(a) << 32n) | BigInt(b);
}

export function digestHex(digest: bigint): string {
  return digest.toString(16).padStart(16, "0");
}
