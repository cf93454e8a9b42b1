// What a door asks the greylist core (src/grey/greylister.ts) and what the core answers: plain,
// serialisable data, so that a door can live in another process (spamd's privsep pipe between
// its SMTP side and its greylister is the model) and so that every door — the tarpit, pfgrey
// logd, pfgrey db, and later the policy service and sync peers — goes through one owner of the
// rules. No door reads, decides and writes the store by itself.

import type { Entry } from '../store/types.js';
import type { Score } from '../weighted/score.js';
import type { Tuple } from './types.js';

/** The tarpit's (ip, helo, from, to), and the address the client connected to (for -M). */
export interface TupleRequest extends Tuple {
  kind: 'tuple';
  /**
   * Weighted greylisting's score of the attempt (src/weighted/score.ts), put here by the core's
   * weighted stage before the request is decided; a door never sets it.
   */
  score?: Score;
}

/**
 * The policy door's request (Postfix's policy protocol at RCPT): postgrey's triplet, already
 * formed by the door (src/policy/postgrey-key.ts: client network, normalised sender,
 * recipient; hashed with --privacy), the client that auto-whitelisting counts, and what the
 * address checks need.
 */
export interface PolicyRequest {
  kind: 'policy';
  /** The client's address: a WHITE or TRAPPED entry of it decides at once. */
  ip: string;
  /** postgrey's key of the triplet (without the POLICY prefix). */
  triplet: string;
  /** The auto-whitelist's key of the client: its address, or its hash with --privacy. */
  client: string;
  /** The recipient as sent, for the spamtrap check. */
  rcpt: string;
  /** --privacy: write no entry that names an address (WHITE, TRAPPED, GOOD); hashes only. */
  privacy: boolean;
  /** The HELO name and the sender as sent (weighted greylisting's checks, its known-good memory). */
  helo?: string;
  sender?: string;
  /** As TupleRequest's. */
  score?: Score;
}

/**
 * One record of spamd's sync protocol (src/sync/wire.ts; spamd(8), SYNCHRONISATION), times in
 * milliseconds: a GREY tuple a peer updated, or a WHITE or TRAPPED address with its expiry.
 */
export type SyncRecord =
  | { type: 'GREY'; time: number; ip: string; helo: string; from: string; to: string }
  | { type: 'WHITE' | 'TRAPPED'; time: number; expire: number; ip: string };

/**
 * A record received from a sync peer. The core applies spamd's receive rules (rules.ts,
 * syncAddress; a GREY tuple is decided as a local one without the -M check) and marks what it
 * emits with `origin: 'sync'`, so that it is never sent on again.
 */
export interface SyncRequest {
  kind: 'sync';
  /** The peer's address, for the log. */
  peer: string;
  record: SyncRecord;
}

export type GreyRequest =
  | TupleRequest
  | PolicyRequest
  | SyncRequest
  /** `pfgrey db -a`: a WHITE or TRAPPED address or a SPAMTRAP address, as spamdb adds it. */
  | { kind: 'add'; type: 'WHITE' | 'TRAPPED' | 'SPAMTRAP'; key: string }
  /** `pfgrey db -d`: the entry under `key`. */
  | { kind: 'delete'; key: string }
  /** `pfgrey db -d -G`: the first GREY tuple of `ip`. */
  | { kind: 'delete-tuple'; ip: string }
  /**
   * `pfgrey db -d --passed`: every GREY tuple of `ip` from which the next scan would whitelist
   * it again (rules.ts, promotesAgain), so that a deleted host stays deleted.
   */
  | { kind: 'delete-passed'; ip: string }
  /** `pfgrey logd`: a whitelisted host was seen passing to the real MTA; its WHITE entry lives on. */
  | { kind: 'extend'; ip: string }
  /** `pfgrey db --import`: an entry restored as it was dumped. */
  | { kind: 'restore'; entry: Entry };

/** Why weighted greylisting let a first attempt by: its score and the findings that made it. */
export interface WeightedPass {
  score: number;
  /** The findings that weigh, in a few words (src/weighted/score.ts, reasons). */
  reasons: string;
}

export type Verdict =
  /**
   * A tuple seen before its pass time; `left` is how long until it may pass (ms). `fresh`
   * (policy door): the triplet is new, or started again after its retry window.
   */
  | { kind: 'greylisted'; key: string; left: number; fresh?: boolean }
  /**
   * A tuple retried after its pass time: the next scan makes its ip WHITE. At the policy door
   * `waited` is set on a triplet's first pass: how long it was delayed (the X-Greylist header).
   */
  | { kind: 'passed'; key: string; waited?: number; weighted?: WeightedPass }
  /**
   * The tuple's ip is already WHITE (`by: 'awl'`: a client auto-whitelisted under --privacy),
   * or weighted greylisting made it WHITE on its first contact (`by: 'weighted'`, at the tarpit).
   */
  | { kind: 'whitelisted'; ip: string; by?: 'awl' | 'weighted'; weighted?: WeightedPass }
  /**
   * The tuple trapped its sender (a spamtrap, a domain outside the allowed ones, -M), or its
   * ip was trapped already (policy door); `left` is how long the trap lasts (ms).
   */
  | { kind: 'trapped'; ip: string; why: string; left?: number }
  /** add, extend, restore: the entry as written. */
  | { kind: 'written'; entry: Entry }
  /** `count`: how many tuples a delete-passed removed (at least one). */
  | { kind: 'deleted'; key: string; count?: number }
  /** delete, delete-tuple or delete-passed found nothing. */
  | { kind: 'absent'; key: string }
  /** The request is not acceptable (a new SPAMTRAP without '@'); nothing was written. */
  | { kind: 'refused'; why: string }
  /** The store would not take the update and the core gave up on it (see the log). */
  | { kind: 'dropped'; why: string };

/**
 * What happened, for whoever follows it (the tarpit's trap list, the scan's trap notes, and
 * later sync and metrics): one hook for all, replacing one callback per kind.
 */
export type CoreEvent =
  | { kind: 'grey'; entry: Entry; origin?: EventOrigin }
  | { kind: 'white'; ip: string; origin?: EventOrigin }
  | { kind: 'trap'; ip: string; origin?: EventOrigin }
  | { kind: 'expire'; key: string }
  /** Weighted greylisting judged a first attempt (src/weighted/score.ts). */
  /** `unanswered`: greylisted only because lookups did not answer (the score's doubt reached the threshold). */
  | { kind: 'weighed'; judgement: 'accept' | 'greylist' | 'trap'; unanswered?: boolean; origin?: EventOrigin };

/**
 * Where a change came from: absent for this host's own doors and scan, 'sync' for a record a
 * sync peer sent, which the sync sender must not send on (no loops between peers).
 */
export type EventOrigin = 'sync';

export type CoreListener = (event: CoreEvent) => void;

/** One hook: listeners subscribe, and each gets every event in order. */
export class CoreEvents {
  private readonly listeners = new Set<CoreListener>();

  /** Subscribes; returns the unsubscribe. */
  on(listener: CoreListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  emit(event: CoreEvent): void {
    for (const l of this.listeners) l(event);
  }
}
