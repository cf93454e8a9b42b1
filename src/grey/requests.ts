// What a door asks the greylist core (src/grey/greylister.ts) and what the core answers: plain,
// serialisable data, so that a door can live in another process (spamd's privsep pipe between
// its SMTP side and its greylister is the model) and so that every door — the tarpit, pfgrey
// logd, pfgrey db, and later the policy service and sync peers — goes through one owner of the
// rules. No door reads, decides and writes the store by itself.

import type { Entry } from '../store/types.js';
import type { Tuple } from './types.js';

/** The tarpit's (ip, helo, from, to), and the address the client connected to (for -M). */
export interface TupleRequest extends Tuple {
  kind: 'tuple';
}

export type GreyRequest =
  | TupleRequest
  /** `pfgrey db -a`: a WHITE or TRAPPED address or a SPAMTRAP address, as spamdb adds it. */
  | { kind: 'add'; type: 'WHITE' | 'TRAPPED' | 'SPAMTRAP'; key: string }
  /** `pfgrey db -d`: the entry under `key`. */
  | { kind: 'delete'; key: string }
  /** `pfgrey db -d -G`: the first GREY tuple of `ip`. */
  | { kind: 'delete-tuple'; ip: string }
  /** `pfgrey logd`: a whitelisted host was seen passing to the real MTA; its WHITE entry lives on. */
  | { kind: 'extend'; ip: string }
  /** `pfgrey db --import`: an entry restored as it was dumped. */
  | { kind: 'restore'; entry: Entry };

export type Verdict =
  /** A tuple seen before its pass time; `left` is how long until it may pass (ms). */
  | { kind: 'greylisted'; key: string; left: number }
  /** A tuple retried after its pass time: the next scan makes its ip WHITE. */
  | { kind: 'passed'; key: string }
  /** The tuple's ip is already WHITE. */
  | { kind: 'whitelisted'; ip: string }
  /** The tuple trapped its sender (a spamtrap, a domain outside the allowed ones, -M). */
  | { kind: 'trapped'; ip: string; why: string }
  /** add, extend, restore: the entry as written. */
  | { kind: 'written'; entry: Entry }
  | { kind: 'deleted'; key: string }
  /** delete or delete-tuple found nothing. */
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
  | { kind: 'grey'; entry: Entry }
  | { kind: 'white'; ip: string }
  | { kind: 'trap'; ip: string }
  | { kind: 'expire'; key: string };

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
