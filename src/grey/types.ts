// The greylist core's tuple: what a door (the tarpit today) hands the greylister to decide.
// Declared here, with the core that owns it, so each door imports it rather than restating it.

/** What one SMTP dialogue yields: the HELO/EHLO argument and the MAIL FROM and RCPT TO paths, as recorded. */
export interface Envelope {
  helo: string;
  from: string;
  to: string;
}

/** A tuple to greylist: the client's address and its envelope. */
export interface Tuple extends Envelope {
  ip: string;
  /** The address the client connected to (pf divert-to keeps the original destination), for -M. */
  localAddress?: string;
}
