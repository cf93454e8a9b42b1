import test from 'ava';
import fc from 'fast-check';
import { REPLY, bannerReply, ctime, renderBlackReply } from '../src/tarpit/replies.js';
import { Session, heloArgument, pathArgument, type SessionOptions } from '../src/tarpit/session.js';

const base: SessionOptions = { hostname: 'mx.example.org', greylist: true, blackMessages: [], blackCode: 450, ip: '192.0.2.7' };
const session = (o: Partial<SessionOptions> = {}) => new Session({ ...base, ...o });

test('the banner is spamd\'s, with ctime in local time', (t) => {
  const when = new Date(2024, 0, 1, 0, 0, 0).getTime();
  t.is(ctime(when), 'Mon Jan  1 00:00:00 2024');
  t.is(bannerReply('mx.example.org', 'spamd IP-based SPAM blocker', when),
    '220 mx.example.org ESMTP spamd IP-based SPAM blocker; Mon Jan  1 00:00:00 2024\r\n');
});

test('a greylisted dialogue gets spamd\'s replies and a 451 at DATA', (t) => {
  const s = session();
  t.deepEqual(s.line('HELO mx.sender.example'), { reply: REPLY.helo, close: false });
  t.deepEqual(s.line('MAIL FROM:<a@sender.example> SIZE=100'), { reply: REPLY.mail, close: false });
  t.deepEqual(s.line('RCPT TO:<b@us.example>'), {
    reply: REPLY.rcpt, close: false,
    tuple: { helo: 'mx.sender.example', from: '<a@sender.example>', to: '<b@us.example>' },
    verbose: { level: 'info', message: '(GREY) 192.0.2.7: <a@sender.example> -> <b@us.example>' },
  });
  t.deepEqual(s.line('DATA'), { reply: '451 Temporary failure, please try again later.\r\n', close: true });
  t.true(s.finished);
});

test('every RCPT produces its own tuple', (t) => {
  const s = session();
  s.line('EHLO h');
  s.line('MAIL FROM:<a@x>');
  t.is(s.line('RCPT TO:<one@y>').tuple?.to, '<one@y>');
  t.is(s.line('RCPT TO:<two@y>').tuple?.to, '<two@y>');
});

test('a client that never says HELO still produces a tuple, with an empty helo', (t) => {
  const s = session();
  s.line('MAIL FROM:<a@x>');
  t.deepEqual(s.line('RCPT TO:<b@y>').tuple, { helo: '', from: '<a@x>', to: '<b@y>' });
});

test('HELO without a domain gets 501 and the client may try again', (t) => {
  const s = session();
  t.is(s.line('HELO').reply, '501 helo requires domain name.\r\n');
  t.is(s.line('HELO   ').reply, REPLY.heloNoArg);
  t.is(s.line('EHLO ok.example').reply, REPLY.helo);
  t.is(s.line('HELO again.example').reply, REPLY.unknown, 'a second HELO is not recognised, as in spamd');
});

test('commands match as case-insensitive prefixes', (t) => {
  const s = session();
  t.is(s.line('heloworld.example').reply, REPLY.helo);
  t.is(s.envelope.helo, 'world.example');
  t.is(s.line('mailx from:<A@B>').reply, REPLY.mail);
  t.is(s.envelope.from, '<A@B>');
});

test('MAIL and RCPT arguments are kept raw: brackets, case, first word after the colon', (t) => {
  t.is(pathArgument('MAIL FROM: <Mixed@Case.Example> BODY=8BITMIME', ''), '<Mixed@Case.Example>');
  t.is(pathArgument('MAIL FROM:<>', 'x'), '<>');
  t.is(pathArgument('MAIL FROM <a@b>', 'previous'), 'previous');
  t.is(heloArgument('EHLO \t host.example  extra'), 'host.example');
  t.is(heloArgument(`HELO ${'x'.repeat(5000)}`).length, 1023);
});

test('NOOP, RSET, unknown commands and QUIT answer as spamd does', (t) => {
  const s = session({ hostname: 'tarpit.example' });
  t.is(s.line('RSET').reply, REPLY.unknown, 'RSET before HELO is not recognised');
  t.is(s.line('NOOP').reply, '250 2.0.0 OK I did nothing\r\n');
  t.is(s.line('HELO a').reply, REPLY.helo);
  t.is(s.line('RSET').reply, '250 Ok to start over.\r\n');
  t.is(s.line('VRFY root').reply, '500 5.5.1 Command unrecognized\r\n');
  t.is(s.line('HELP').reply, REPLY.unknown);
  t.deepEqual(s.line('QUIT'), { reply: '221 tarpit.example\r\n', close: true });
});

test('a second MAIL after MAIL is not recognised', (t) => {
  const s = session();
  s.line('MAIL FROM:<a@x>');
  t.is(s.line('MAIL FROM:<b@x>').reply, REPLY.unknown);
});

test('the 21st unrecognised command ends the session with the final reply', (t) => {
  const s = session();
  for (let i = 0; i < 20; i++) t.is(s.line('BOGUS').reply, REPLY.unknown);
  t.deepEqual(s.line('BOGUS'), { reply: REPLY.greylisted, close: true });
});

test('blacklisted clients get 354, then the list message after the dot', (t) => {
  const s = session({ blackMessages: ['"Your address %A is listed\\nSee http://example.org/"'], blackCode: 550 });
  s.line('HELO x');
  s.line('MAIL FROM:<a@x>');
  t.is(s.line('RCPT TO:<b@y>').tuple, undefined, 'blacklisted clients are not greylisted');
  t.is(s.line('DATA').reply, REPLY.data);
  t.is(s.line('Subject: hi').reply, '');
  t.is(s.line('quit is just body text here').reply, '', 'QUIT inside DATA is content');
  t.deepEqual(s.line('.'), { reply: '550-Your address 192.0.2.7 is listed\r\n550 See http://example.org/\r\n', close: true });
});

test('blacklisted DATA is cut off after ten body lines', (t) => {
  const s = session({ blackMessages: ['"listed"'] });
  s.line('DATA');
  s.line('Subject: x');
  s.line('');
  for (let i = 1; i < 10; i++) t.is(s.line(`line ${i}`).reply, '');
  t.deepEqual(s.line('line 10'), { reply: '450 listed\r\n', close: true,
    verbose: { level: 'debug', message: '192.0.2.7: Body: line 10' } });
});

test('blacklist-only mode accepts DATA from unlisted clients and answers 451 after it', (t) => {
  const s = session({ greylist: false });
  t.is(s.line('DATA').reply, REPLY.data);
  t.deepEqual(s.line('.'), { reply: REPLY.greylisted, close: true });
});

test('blacklist messages render escapes, %A and several lists as one reply', (t) => {
  t.is(renderBlackReply(['"a %% b \\\\ c \\" d %B \\t"'], 450, '192.0.2.1'), '450 a % b \\ c " d %B \\t\r\n');
  t.is(renderBlackReply(['"one\\n"', '"two %A"'], 450, '192.0.2.1'), '450-one\r\n450 two 192.0.2.1\r\n');
});

test('no input line ever yields a malformed reply or throws', (t) => {
  fc.assert(fc.property(fc.array(fc.string({ maxLength: 60 }), { maxLength: 40 }), fc.boolean(), (lines, black) => {
    const s = session(black ? { blackMessages: ['"x"'] } : {});
    for (const line of lines) {
      const out = s.line(line);
      if (out.reply !== '') {
        if (!/^(\d{3}[ -][^\r\n]*\r\n)+$/.test(out.reply)) return false;
      }
      if (out.close) break;
    }
    return true;
  }), { numRuns: 2000 });
  t.pass();
});

test('each RCPT with a sender carries spamd\'s -v line, (GREY) or (BLACK)', (t) => {
  const grey = session();
  grey.line('MAIL FROM:<a@x>');
  t.deepEqual(grey.line('RCPT TO:<b@y>').verbose, { level: 'info', message: '(GREY) 192.0.2.7: <a@x> -> <b@y>' });
  t.is(session().line('RCPT TO:<b@y>').verbose, undefined, 'no sender yet: nothing to log');
  const black = session({ blackMessages: ['"listed"'] });
  black.line('MAIL FROM:<a@x>');
  t.deepEqual(black.line('RCPT TO:<b@y>').verbose, { level: 'info', message: '(BLACK) 192.0.2.7: <a@x> -> <b@y>' });
});
