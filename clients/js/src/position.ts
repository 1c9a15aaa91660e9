/** A channel position: the epoch and the offset of the last publication seen (docs/protocol.md). */
export interface Position {
  epoch: string;
  offset: number;
}

export type Verdict =
  /** The next publication: deliver it. */
  | 'deliver'
  /** Already seen (same epoch, offset not ahead): drop it. */
  | 'duplicate'
  /** Same epoch, but publications are missing between the last seen and this one. */
  | 'gap'
  /** Another epoch: the channel's history was reset. */
  | 'reset';

/** Decides what a publication at `next` means for a subscriber holding `held`. */
export function judge(held: Position | undefined, next: Position): Verdict {
  if (!held || held.epoch === '') return 'deliver';
  if (next.epoch !== held.epoch) return 'reset';
  if (next.offset <= held.offset) return 'duplicate';
  if (next.offset > held.offset + 1) return 'gap';
  return 'deliver';
}

/** The SSE stream's fingerprint of its (sorted) set of channels: FNV-1a over `name,` each, 8 hex digits. */
export function sseFingerprint(sortedChannels: readonly string[]): string {
  let h = 0x811c9dc5;
  const enc = new TextEncoder();
  for (const c of sortedChannels) {
    for (const b of enc.encode(c + ',')) {
      h = Math.imul(h ^ b, 0x01000193) >>> 0;
    }
  }
  return h.toString(16).padStart(8, '0');
}

/**
 * The SSE resume id (`v1.<fingerprint>.<epoch>-<offset>...`) for a set of channels, built from
 * the client's own positions, so that a stream reopened with another set of channels still
 * resumes every channel it had. Channels without a position get `-0`, which the server reports
 * as not recovered (the client ignores that for them: there was nothing to recover).
 */
export function sseResumeId(channels: readonly string[], positions: ReadonlyMap<string, Position>): string {
  const sorted = [...channels].sort(byteOrder);
  let id = `v1.${sseFingerprint(sorted)}`;
  for (const c of sorted) {
    const p = positions.get(c);
    id += p ? `.${p.epoch}-${p.offset}` : '.-0';
  }
  return id;
}

/** Orders strings by their UTF-8 bytes, as the server sorts channel names. */
export function byteOrder(a: string, b: string): number {
  const ea = new TextEncoder().encode(a);
  const eb = new TextEncoder().encode(b);
  const n = Math.min(ea.length, eb.length);
  for (let i = 0; i < n; i++) {
    if (ea[i] !== eb[i]) return ea[i]! - eb[i]!;
  }
  return ea.length - eb.length;
}

/** True if the name is a pattern (has a `*` or `>` segment). */
export function isPattern(name: string): boolean {
  return name.split(':').some((s) => s === '*' || s === '>');
}
