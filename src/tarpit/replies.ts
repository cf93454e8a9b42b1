// spamd's reply texts, byte for byte as spamd.c (OpenBSD's libexec/spamd) sends them. Every
// reply ends in CRLF — including the multi-line blacklist message, which spamd sends with bare
// LFs when it is not stuttering; we always send CRLF (README.md's "Where pfgrey differs from
// spamd").

export const REPLY = Object.freeze({
  helo: '250 Hello, spam sender. Pleased to be wasting your time.\r\n',
  heloNoArg: '501 helo requires domain name.\r\n',
  mail: '250 You are about to try to deliver spam. Your time will be spent, for nothing.\r\n',
  rcpt: '250 This is hurting you more than it is hurting me.\r\n',
  rset: '250 Ok to start over.\r\n',
  noop: '250 2.0.0 OK I did nothing\r\n',
  unknown: '500 5.5.1 Command unrecognized\r\n',
  data: '354 Enter spam, end with "." on a line by itself\r\n',
  greylisted: '451 Temporary failure, please try again later.\r\n',
});

export function quitReply(hostname: string): string {
  return `221 ${hostname}\r\n`;
}

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** ctime(3) without its newline, in local time: `Mon Jan  1 00:00:00 2024`. */
export function ctime(ms: number): string {
  const d = new Date(ms);
  const two = (n: number) => String(n).padStart(2, '0');
  return `${DAYS[d.getDay()]} ${MONTHS[d.getMonth()]} ${String(d.getDate()).padStart(2, ' ')} ` +
    `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())} ${d.getFullYear()}`;
}

export function bannerReply(hostname: string, name: string, now: number): string {
  return `220 ${hostname} ESMTP ${name}; ${ctime(now)}\r\n`;
}

/**
 * Renders blacklist messages as spamd does (spamd.conf(5), `msg`): each message is the quoted
 * string from the config line; `\n` starts a new line, `\"` is a quote, `%A` is the client's
 * address, `\\` and `%%` are themselves. Lines join into one multi-line reply where every line
 * but the last reads `code-…`. Every matching list is shown, as spamd(8) promises; current spamd
 * shows only the first (README.md's "Where pfgrey differs from spamd").
 */
export function renderBlackReply(messages: readonly string[], code: number, ip: string): string {
  const lines: string[] = [];
  for (const msg of messages) {
    let text = msg.startsWith('"') ? msg.slice(1) : msg;
    if (text.endsWith('"')) text = text.slice(0, -1);
    let out = '';
    let pending = '';
    for (const ch of text) {
      if (pending) {
        if (pending === '\\' && ch === 'n') out += '\n';
        else if (pending === '\\' && ch === '"') out += '"';
        else if (pending === '%' && ch === 'A') out += ip;
        else if (ch === '\\' || ch === '%') out += pending;
        else out += pending + ch;
        pending = '';
      } else if (ch === '\\' || ch === '%') {
        pending = ch;
      } else {
        out += ch;
      }
    }
    out += pending;
    // A CR (or another control character) inside a reply line would end it early for some
    // clients (RFC 5321 forbids bare CR); only TAB, which spamd.conf messages use, is kept.
    out = out.replace(/[\x00-\x08\x0b-\x1f\x7f]/g, ' ');
    for (const line of out.replace(/\n$/, '').split('\n')) lines.push(line);
  }
  if (lines.length === 0) lines.push('');
  return lines.map((l, i) => `${code}${i === lines.length - 1 ? ' ' : '-'}${l}\r\n`).join('');
}
