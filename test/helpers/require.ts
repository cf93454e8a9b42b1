// Tests that need something this machine may lack (root, setpriv, systemd-analyze) skip with a
// printed reason locally; CI sets PFGREY_REQUIRE_E2E=1, and there a missing piece is a failure,
// so a broken CI image cannot turn a test into a silent pass.

import type { ExecutionContext } from 'ava';

export const required = process.env.PFGREY_REQUIRE_E2E === '1';

/** Ends the test for want of `what`: a logged pass locally, a failure where everything is required. */
export function lacking(t: ExecutionContext, what: string): void {
  if (required) {
    t.fail(`${what}, and PFGREY_REQUIRE_E2E=1 requires it`);
    return;
  }
  t.log(`skipped: ${what}`);
  t.pass();
}
