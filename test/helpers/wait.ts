// Waiting in tests: poll for the condition a test needs, never sleep for a time that usually
// suffices. The bounds are generous because the tests also run on a slow, busy 2-core machine;
// a condition that holds returns at once.

type Falsy = false | 0 | '' | null | undefined;

/** Polls `check` until it returns a truthy value, and returns that value; throws after `ms`. */
export async function eventually<T>(check: () => T | Falsy | Promise<T | Falsy>, what: string, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const last = await check();
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
