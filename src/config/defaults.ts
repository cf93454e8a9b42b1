// Every default pfgrey uses lives here, so that a number spamd users know (8025, 25 minutes,
// 36 days, 800 connections…) is changed in exactly one place. Durations are milliseconds.

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

export const DEFAULTS = Object.freeze({
  /** spamd's `spamd/tcp` service port. */
  port: 8025,
  /** spamd's `spamd-cfg/tcp` service port. */
  configPort: 8026,
  /** spamd ≥ 2016 binds the loopback address unless -l says otherwise. */
  listenAddress: '127.0.0.1',
  /**
   * Where `pfgrey stats` asks the daemon first: the address the manual suggests for --http
   * (which is off unless given). 8027 follows spamd's 8025 and 8026.
   */
  httpAddress: '127.0.0.1:8027',
  /** Banner product text (-n). */
  bannerName: 'spamd IP-based SPAM blocker',
  /** Reply code for blacklisted hosts (-4/-5). */
  blackCode: 450 as 450 | 550,

  /** grey.h: PASSTIME, GREYEXP, WHITEEXP, TRAPEXP. */
  passTime: 25 * MINUTE,
  greyExpiry: 4 * HOUR,
  whiteExpiry: 36 * DAY,
  trapExpiry: 24 * HOUR,
  /** The low-priority MX rule (-M) is off for this long after start, as in spamd. */
  mxGrace: 60 * SECOND,
  /** spamd's list of recipient domains; a recipient outside them traps the sender. */
  allowedDomainsFile: '/etc/mail/spamd.alloweddomains',
  /** The list trapped hosts are tarpitted as, and its message (spamd(8), GREYTRAPPING). */
  greytrapTag: 'spamd-greytrap',
  greytrapMessage: '"Your address %A has mailed to spamtraps here\\n"',
  /**
   * A config-port connection may send at most this much (spamd has no limit). pfgrey setup and
   * spamd-setup send one list per connection, each block as `a.b.c.d/nn;`, some 17 bytes for
   * a /32: the largest lists spamd.conf has named (nixspam, uatraps) hold a few hundred
   * thousand addresses, 2–9 MB. 32 MB is close to two million blocks, four times that.
   */
  configMaxBytes: 32 * 1024 * 1024,
  /**
   * Bytes held for all config-port connections together, from arrival until their lists are
   * installed: two connections of configMaxBytes. Senders send one list at a time, so this only
   * bounds what several hostile or stuck ones hold (parsing one takes some fifteen times its
   * size besides, one connection at a time: 10 × 40 MB at once took RSS to 2.5 GB without this).
   */
  configMaxBytesInFlight: 64 * 1024 * 1024,
  /**
   * Config-port connections open (or still being parsed) at once; more are reset. spamd-setup
   * and pfgrey setup use one at a time; eight lets a cron run, a run by hand and spamd-setup
   * overlap, and bounds the worker threads (about 10 MB each) a local user can start.
   */
  configMaxConnections: 8,
  /**
   * A config-port connection that completes no line for this long is reset. Senders fetch
   * their lists before they connect and write the line at once (a few MB take milliseconds
   * over loopback), so a pause of seconds is a stuck or hostile peer; half of setupSendTimeout.
   */
  configIdleTimeout: 30 * SECOND,
  /**
   * Lines one config-port connection may carry; later ones are refused unread. spamd-setup
   * sends one; `pfgrey setup -n` output sent as one connection has one per list in spamd.conf.
   * Every line takes main-thread time to install and a log line, so this bounds both.
   */
  configMaxLines: 100,
  /**
   * Bad lines of one connection logged one by one; the rest are counted in one line. A sender
   * sends one line a connection, so ten show any real mistake; 50 MB of junk once wrote
   * 200,000 lines.
   */
  configMaxBadLinesLogged: 10,
  /**
   * Connections of at least this many bytes are parsed in a worker thread, so that no list
   * holds the event loop past the 50 ms the scan is held to. On a 2-core machine short IPv6
   * blocks, the dearest input per byte, took 10–12 ms a 32 KiB list on the main thread, 18–30
   * ms at 64 KiB, 38–51 ms at 128 KiB (`npm run bench:config`); a machine busy with other work
   * can take twice as long, so 32 KiB. (IPv4 lists cost a quarter of that; the largest real
   * lists go to the worker in any case.)
   */
  configOffThreadBytes: 32 * 1024,
  /** DB_SCAN_INTERVAL. */
  scanInterval: 60 * SECOND,

  /** -s: delay between stuttered bytes. */
  stutter: 1 * SECOND,
  /** -S: greylisted clients are stuttered only during their first N seconds. */
  greyStutter: 10 * SECOND,
  /** MAXTIME: a connection waiting this long for input is closed. */
  idleTimeout: 400 * SECOND,

  /** -c: concurrent connections. */
  maxCon: 800,
  /** Above maxcon − this many clients spamd stops stuttering, to drain faster. */
  stutterOffMargin: 5,
  /** maxblack defaults to maxcon − this (spamd, greylist mode). */
  maxBlackMargin: 100,
  /** Input line cap: spamd accumulates at most 8191 bytes for one line. */
  maxLine: 8191,
  /** spamd's HELO/MAIL/RCPT capture buffers are 1024 bytes (1023 characters). */
  maxArg: 1023,
  /** The 21st unrecognised command ends the session. */
  maxBadCommands: 20,
  /** Blacklisted DATA is cut after this many body lines. */
  maxBodyLines: 10,

  /** Group commit: pending tuple writes are flushed at least this often. */
  commitDelay: 200,
  /** …or as soon as this many are queued. */
  commitBatch: 5000,
  /**
   * Tuples waiting for the database past which the tarpit stops answering for a moment: about
   * a commit window's worth, so a crash loses at most that much of what clients were told.
   */
  maxBacklog: 10_000,
  /** Rows read per step of the scan, so the event loop never waits long on it. */
  scanChunk: 2000,
  /** SQLite busy timeout: the CLI and the daemon share the file. */
  busyTimeout: 10 * SECOND,

  /** Firewall: where pfctl lives, which table we own. */
  pfctl: '/sbin/pfctl',
  pfDevice: '/dev/pf',
  table: 'spamd-white',
  /** A pfctl that has not finished after this long is killed. */
  firewallTimeout: 30 * SECOND,
  /**
   * A program stopped at its deadline (pfctl, nft, ftp) gets SIGTERM, then SIGKILL this much
   * later if it is still there: time to exit cleanly, while a stuck one cannot hold a retry up.
   */
  killGrace: 2 * SECOND,
  /** Retry backoff after a failed push: first delay, doubled up to the cap. */
  firewallRetryMin: 1 * SECOND,
  firewallRetryMax: 60 * SECOND,
  /**
   * A changed whitelist is pushed as deletions and additions when it differs from the table by
   * at most this many addresses and this fraction of the table; otherwise the table is replaced.
   */
  firewallDiffMax: 1000,
  firewallDiffRatio: 0.1,
  /** nftables (--firewall nft): the tool, and the `FAMILY NAME` of the table pfgrey.nft loads. */
  nft: '/usr/sbin/nft',
  nftTable: 'inet pfgrey',

  /** spamd-setup's configuration, its fetcher for ftp lists, and the pf table -b loads. */
  spamdConf: '/etc/mail/spamd.conf',
  ftp: '/usr/bin/ftp',
  blackTable: 'spamd',
  /**
   * How long `pfgrey setup -b` lets pfctl or nft load the blacklists. nft took some 4 s of CPU
   * for 300,000 blocks, and 15–20 s on a 2-core machine busy with other work; setup is a batch
   * job, so this only stops one that is stuck.
   */
  setupFirewallTimeout: 5 * MINUTE,
  /** A list fetch that receives nothing for this long is abandoned. */
  fetchIdleTimeout: 60 * SECOND,
  /** Largest list accepted, before and after gunzip: the largest real lists are a few MB. */
  maxListBytes: 256 * 1024 * 1024,

  /** pfgrey logd (spamlogd): the pf log interface and the tool that decodes it. */
  pflog: 'pflog0',
  /**
   * pfgrey logd on Linux: the nflog groups pf/linux/pfgrey.nft logs passed SMTP to, inbound
   * (whitelisted clients reaching the MTA) and outbound (servers this host sends to). nflog
   * packets as tcpdump prints them carry no direction, so each direction has a group of its own;
   * 25 for SMTP's port. The default -l on Linux is `nflog:25,26`.
   */
  nflogGroups: { in: 25, out: 26 } as const,
  /** Where the BSDs keep tcpdump; Linux distributions use /usr/bin (tried next). */
  tcpdump: ['/usr/sbin/tcpdump', '/usr/bin/tcpdump'] as readonly string[],

  /**
   * spamd's sync protocol (spamd(8), SYNCHRONISATION; src/sync/): the `spamd-sync` port
   * (8025/udp), the key file whose SHA-1 digest keys the HMAC, the multicast group and its
   * default TTL (IP_DEFAULT_MULTICAST_TTL), and spamd's receive buffer (SPAM_SYNC_MAXSIZE): a
   * longer packet cannot be received by spamd, so none is sent.
   */
  syncPort: 8025,
  syncKey: '/etc/mail/spamd.key',
  /** How long a stopping logd waits for its queued sync packets to leave. */
  syncDrain: 2 * SECOND,
  syncGroup: '224.0.1.240',
  syncTtl: 1,
  syncMaxPacket: 1408,
  /**
   * Packets waiting to be sent to the sync peers, and sent but not yet handed to the kernel: a
   * burst of new tuples queues here, never in the greylister; past the queue's bound further
   * packets are dropped and counted (the peers learn the next update of each tuple).
   */
  syncQueueMax: 10_000,
  syncInFlight: 64,
  /** Refused sync packets are logged one line per reason at first, then one per this with a count. */
  syncRefusedLogEvery: MINUTE,

  /** The unprivileged user `pfgrey run` becomes when started as root (spamd: _spamd). */
  user: '_pfgrey',

  /** Tuples the greylister decides per batch: one store lookup answers all their keys. */
  greyBatch: 512,
  /** The tarpit's listen queue (spamd's is SOMAXCONN; 511 is Linux's default somaxconn + 1). */
  listenBacklog: 511,
  /** How long `pfgrey setup` waits for the daemon to take one list (ms). */
  setupSendTimeout: MINUTE,
  /** How long `pfgrey check` waits for the tarpit's first banner byte (ms). */
  checkBannerWait: 5 * SECOND,
  /** tcpdump restarts for `pfgrey logd`: first delay, doubling up to the max (ms). */
  logdRetryMin: SECOND,
  logdRetryMax: MINUTE,
  /** A greylist batch the store refused is retried after this, doubling up to the max (ms). */
  greyRetryMin: 100,
  greyRetryMax: 5 * SECOND,
  /** How long a greylist batch is retried before it is given up (ms). */
  greyRetryFor: MINUTE,
  /**
   * How long a shared PostgreSQL database keeps the name of an atomic update, so a retry after
   * a lost COMMIT reply is not made twice (ms): far past greyRetryFor, the retries' span.
   */
  updateNameLife: HOUR,
  /** How often a node deletes the update names older than updateNameLife (ms). */
  updateNameForget: MINUTE,
  /**
   * The PostgreSQL server's TCP keepalives on every pfgrey connection (README.md, "One
   * PostgreSQL database"): when a host goes silent without closing its connections (power off,
   * link down), the server probes after `idle`, every `interval`, and gives up after `count`
   * unanswered probes, 30 s in all, ending the session: the maintenance lock is freed for the
   * next node to scan, and a transaction cut off midway releases the keys it had locked, which
   * other hosts' updates wait for. Left to the system's defaults that takes over two hours. The same 30 s bounds a reply the
   * host never acknowledged (tcp_user_timeout), which probes do not cover. Probes are answered
   * by the host's kernel, so a busy node keeps its lock; only silence this long loses it.
   */
  pgKeepalive: { idle: 10 * SECOND, interval: 5 * SECOND, count: 4 },
  /** Most stutter/idle deadlines the shared timer serves in one event-loop turn. */
  timerMaxPerTurn: 200,
  /** How long `pfgrey logd` waits for the daemon to create the database, and how often it looks. */
  logdDbWait: 60 * SECOND,
  logdDbPoll: SECOND,
  /** How long `pfgrey setup -D` retries a refused config port, and how often (ms). */
  setupWaitForDaemon: 30 * SECOND,
  setupRetryDelay: 500,

  /**
   * Default database when neither --db nor PFGREY_DB is given: each system's place for a
   * daemon's state (hier(7) on the BSDs, the FHS on Linux), so that `pfgrey db` typed in a
   * shell finds the database the service uses without being told.
   */
  dbPath: process.platform === 'linux' ? '/var/lib/pfgrey/pfgrey.db' : '/var/db/pfgrey/pfgrey.db',
  /** -h longer than this is refused, as spamd does. */
  hostnameMax: 255,

  /**
   * Longest SPAMTRAP address `pfgrey db -T -a` and --import accept: RFC 5321 section 4.5.3.1.3
   * limits a path to 256 octets with its angle brackets, so an address has at most 254.
   */
  maxSpamtrapKey: 254,
  /**
   * Longest database key `pfgrey db -a` and --import accept (bytes). A GREY key is four parts
   * (ip, helo, from, to) and three line breaks, and no part can be longer than one input line
   * (maxLine, 8191): 4 × 8191 + 3. The tarpit itself stores far less (maxArg per part), so every
   * key a client can make fits with room to spare, and so does any spamdb dump; a 10 MB key
   * does not.
   */
  maxKey: 4 * 8191 + 3,

  /**
   * How long a stop (SIGTERM) keeps retrying the greylist updates the database will not take
   * (another process holding its write lock, say) before it gives them up and says how many
   * were lost. The rest of the stop must fit too: rc.d/linux/pfgrey.service gives 30 s
   * (TimeoutStopSec) before SIGKILL, as OpenBSD's rc.subr(8) waits daemon_timeout, 30 s by
   * default; what is left covers closing the ports and the last firewall push.
   */
  stopTimeout: 20 * SECOND,
  /**
   * While stopping, one commit attempt waits at most this long for another process's lock
   * (instead of busyTimeout): a SQLite call waiting on a lock cannot be cut short, so this is
   * also how soon a second SIGTERM, or the stop deadline, can end the stop.
   */
  stopRetryWait: 1 * SECOND,

  /**
   * Postfix's policy protocol (SMTPD_POLICY_README): the longest attribute value kept. Postfix
   * sends some 30 attributes of at most a few hundred bytes (an address is at most 254, a
   * certificate subject a few hundred); 4 KiB keeps every real one whole and bounds the rest,
   * which is cut there and counted.
   */
  policyValueMax: 4096,
  /** The longest attribute name: Postfix's are at most some 30 characters. */
  policyNameMax: 64,
  /** Attributes kept per request; Postfix sends about 30. Further ones are ignored and counted. */
  policyAttrsMax: 100,
  /** pfgrey policy listens where postgrey does: 127.0.0.1:10023. */
  policyHost: '127.0.0.1',
  policyPort: 10023,
  /** postgrey's --delay: how long a new tuple is deferred. */
  policyDelay: 300 * SECOND,
  /** The answer to a greylisted tuple: Postfix defers it unless a later restriction rejects. */
  policyGreylistAction: 'DEFER_IF_PERMIT',
  /** Its text; %s is the seconds left, %r the recipient's domain. */
  policyGreylistText: 'Greylisted by pfgrey, try again in %s seconds',
  /**
   * Policy requests of one connection read ahead of their answers; past this the connection is
   * not read until answers catch up. Postfix asks one at a time; 64 leaves room for pipelining
   * clients and bounds what a client that never reads its answers can queue.
   */
  policyPipelineMax: 64,
  /** postgrey's --max-age: a triplet or client unseen this long is forgotten. */
  policyMaxAge: 35 * DAY,
  /**
   * postgrey's --retry-window: a triplet not retried within this of its first attempt starts
   * again as new, and one never passed is forgotten this long after it was last seen.
   */
  policyRetryWindow: 2 * DAY,
  /** postgrey's --auto-whitelist-clients: the passes (one an hour at most) that whitelist a client. */
  policyAwlClients: 5,
  /** A client's auto-whitelist count, and a whitelisted client's expiry, move at most this often. */
  policyAwlEvery: HOUR,
  /** postgrey's --lookup-by-subnet: the prefixes a client's address is cut to in a triplet. */
  policyIpv4Cidr: 24,
  policyIpv6Cidr: 64,
  /** How often a standalone pfgrey policy forgets expired entries (postgrey: hourly, keys nightly). */
  policyMaintenance: HOUR,
  /**
   * The first maintenance of a standalone pfgrey policy: not at start, so a restart does not
   * walk the database before answering. A --stdio process lives as long as one smtpd's
   * connection (Postfix ends it within smtpd_policy_service_max_ttl, 1000 s), so it goes first
   * after a few minutes, and the processes Postfix keeps starting share the work.
   */
  policyFirstMaintenance: MINUTE,
  policyFirstMaintenanceStdio: 5 * MINUTE,
  /** postgrey's X-Greylist header; %t seconds waited, %v version, %h host name, %d date. */
  policyHeader: 'X-Greylist: delayed %t seconds by pfgrey-%v; %d',
  /** postgrey's --socketmode default: the socket's directory (Postfix's private/) guards it. */
  policySocketMode: 0o666,
  /** Policy connections served at once per listener; more wait in the kernel's backlog. */
  policyMaxConnections: 1000,
  /** A policy connection silent this long (no request, no answer pending) is closed. */
  policyIdleTimeout: 10 * MINUTE,
  /**
   * A policy request the core has not decided within this (a database held locked by another
   * process, a disk that stalls) is answered DUNNO: the published Exim ACL gives readsocket
   * 5 s before it takes DUNNO itself, and Postfix waits 100 s (smtpd_policy_service_timeout)
   * and then fails the RCPT with 451 4.3.5 "Server configuration problem".
   */
  policyAnswerTimeout: 4 * SECOND,
  /**
   * Failed answers (timeouts, database errors) are logged one line at first, then one line
   * per this interval with how many more there were: a database down under 1,000 requests/s
   * must not write 1,000 lines a second.
   */
  policyFailureLogEvery: MINUTE,

  /**
   * DNS for weighted greylisting (src/weighted/dns.ts). One query to one resolver is given this
   * long (c-ares's timeout, one try); a lookup asks each resolver in turn, so a lookup costs at
   * most this times the number of resolvers. glibc waits 5 s (resolv.conf(5), timeout:); 2 s
   * lets a second resolver be asked within one decision's budget.
   */
  dnsTimeout: 2 * SECOND,
  /**
   * All the lookups of one decision together (DNSBLs, DNSWLs, rDNS, SPF) wait at most this; what
   * has not answered by then counts as neutral, so a slow or dead resolver delays a decision by
   * at most this much. It is kept under policyAnswerTimeout, so that a dead resolver still
   * leaves the core time to decide before the policy door gives its fail-safe DUNNO.
   */
  dnsBudget: 3 * SECOND,
  /**
   * Answers cached (one per type and name); the least recently used goes first past this. A
   * first attempt asks about six names (lists, PTR, its forward lookup, HELO, SPF's TXT and
   * what it names), so this holds the answers of some 8,000 recent clients, in a few tens of MB.
   */
  dnsCacheEntries: 50_000,
  /** Queries sent and not yet answered at once; more wait in a queue. */
  dnsMaxInFlight: 64,
  /**
   * Lookups waiting for a free query slot; past this a lookup is answered OVERLOAD at once
   * (neutral) rather than queued behind minutes of work a dead resolver would never finish.
   */
  dnsMaxQueued: 1024,
  /**
   * How long a "no such name" or "no such record" answer is cached. RFC 2308 section 5 takes it
   * from the SOA's minimum field, which node:dns does not expose; 300 s is a common SOA minimum,
   * and RFC 2308 section 5 finds one to three hours a sensible limit.
   */
  dnsNegativeTtl: 300 * SECOND,
  /** The TTL assumed for PTR, TXT and MX answers, whose TTLs node:dns does not report. */
  dnsDefaultTtl: 300 * SECOND,
  /** No answer is cached longer than this, whatever its TTL (RFC 8767 suggests 7 days as the most). */
  dnsMaxTtl: DAY,
  /**
   * What a DNSBL listing adds to a client's score when --dnsbl names no weight (src/weighted/
   * dnslists.ts): as much as greylistThreshold, so that one listing alone greylists, as bley
   * greylists a client one DNSBL lists (its dnsbl_threshold of 1).
   */
  dnsblWeight: 2,
  /**
   * What a DNSWL listing adds when --dnswl names no weight: as much taken away, so one allow
   * list cancels one block list, or a bad HELO and a generic rDNS. bley lets a client a DNSWL
   * lists pass without further checks; a larger weight (--dnswl list.dnswl.org=-5) comes closer.
   */
  dnswlWeight: -2,
  /**
   * The A records of one DNS list answer looked at, at most: a list answers one return code for
   * each of its sub-lists that lists the client, a handful; hundreds would come from a broken or
   * hostile zone, and would only cost time and log-line length.
   */
  dnslistMaxRecords: 16,
  /**
   * What a HELO that does not conform adds to a client's score (src/weighted/helo-rdns.ts): no
   * name, not a fully qualified domain name, a bare IP address, an address literal that is not
   * the client's, one of our own names, or a name without an A or AAAA record (RFC 5321 section
   * 4.1.1.1 asks for the client's FQDN, or an address literal when it has none). bley counts
   * each such finding as one point, the same as one DNSBL listing.
   */
  heloWeight: 1,
  /** What a client address without a PTR record adds (the rDNS check): a dial-up or dynamic host, as bley judges it. */
  rdnsMissingWeight: 1,
  /**
   * What a PTR whose names do not resolve back to the client's address adds ("not forward-
   * confirmed"): half a point, because misconfigured but legitimate servers have this more
   * often than missing rDNS, and alone it should not tip a decision.
   */
  rdnsUnconfirmedWeight: 0.5,
  /**
   * What PTR names that look generic (dsl-192-0-2-1.pool.example) add: alone when they are
   * forward-confirmed, on top of rdnsUnconfirmedWeight when they are not, so that a dial-up
   * pool without A records for its names weighs no less than one with them.
   */
  rdnsGenericWeight: 1,
  /**
   * PTR names followed back to addresses, at most: RFC 7208 section 4.6.4 (SPF's ptr mechanism)
   * uses no more than 10 PTR records, for the same reason — a client controls its PTR answers.
   */
  rdnsMaxNames: 10,
  /** A generic-rDNS pattern file larger than this is refused (it is a few hundred lines in practice). */
  genericPatternsMaxBytes: 1024 * 1024,
  /**
   * SPF (src/weighted/spf.ts): the mechanisms and modifiers that query DNS (include, a, mx, ptr,
   * exists, redirect) one check may use, and the lookups that may find nothing ("void lookups");
   * past either, the check is permerror. RFC 7208 section 4.6.4 sets 10 and suggests 2, so that
   * one sender's record cannot make a receiver flood DNS. The same 10 bounds the addresses one
   * mx or ptr mechanism looks up.
   */
  spfMaxLookups: 10,
  spfMaxVoidLookups: 2,
  /**
   * Weighted greylisting (src/weighted/score.ts): a first attempt whose score is below this is
   * not greylisted. bley greylists at two points of HELO, rDNS, SPF and sender = recipient
   * findings (its rfc_threshold of 2), and at one DNSBL listing, which weighs 2 here.
   */
  greylistThreshold: 2,
  /** What an SPF `fail` of the sender domain adds: enough alone to greylist (RFC 7208 section 2.6.4: not authorised). */
  spfFailWeight: 2,
  /** What an SPF `softfail` adds (RFC 7208 section 2.6.5: probably not authorised): one point, as bley counts fail and softfail. */
  spfSoftfailWeight: 1,
  /** What a sender address equal to the recipient adds: spamware forges it, bley counts it one point. */
  senderIsRecipientWeight: 1,
  /**
   * What the known-good-sender memory adds: a sender domain and client network that passed
   * greylisting before. It outweighs any listing (and any trap threshold), so that such a
   * sender is accepted at once, as bley accepts what its database knows as clean.
   */
  knownGoodWeight: -100,
  /** How long the known-good-sender memory keeps a sender domain and client network after its last pass. */
  knownGoodExpiry: 35 * DAY,
  /**
   * The network of the known-good-sender memory: a sender's mail servers sit in one /24 (IPv4)
   * or /64 (IPv6) often enough, as postgrey's --lookup-by-subnet assumes.
   */
  knownGoodIpv4Cidr: 24,
  knownGoodIpv6Cidr: 64,
  /** A known-good sender's entry is renewed by a pass at most this often (its expiry is 35 days). */
  knownGoodRenewEvery: HOUR,
  /**
   * A score, once computed, is used again for the same client address, HELO, sender and
   * recipient class for this long (bley caches its decisions for 60 s): a message to 50
   * recipients asks the checks once. Scores with a lookup that timed out are not kept.
   */
  scoreCacheTtl: MINUTE,
  /** Scores kept, at most; the least recently used goes first. */
  scoreCacheEntries: 10_000,
});

export type Defaults = typeof DEFAULTS;
