// Nodemailer's pooled SMTP transport as a benchmark contender: sends COUNT
// copies of one prepared raw message (the same file every contender sends,
// so mp-sink can check each arrives whole) to one SMTP server with
// STARTTLS required, the way a notification service would configure it:
// pool of maxConnections sessions, maxMessages messages per connection.
// Prints one JSON summary line shaped like mp-smtpsend's.
//
// usage: node send.js --host IP --port N --servername NAME --ca FILE
//          --message FILE --count N --sessions N --msgs-per-conn N
//          [--from ADDR] [--rcpt ADDR] [--timeout SECONDS]
'use strict';
const fs = require('fs');
const nodemailer = require('nodemailer');

function opts(argv) {
  const o = { port: 25, from: 'bench@client.bench.test', rcpt: 'rcpt@sink.bench.test',
    count: 1, sessions: 1, 'msgs-per-conn': 100, timeout: 600 };
  for (let i = 2; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || i + 1 >= argv.length) {
      console.error('send.js: bad argument ' + argv[i]);
      process.exit(1);
    }
    o[argv[i].slice(2)] = argv[i + 1];
  }
  for (const k of ['host', 'servername', 'ca', 'message']) {
    if (!o[k]) {
      console.error('send.js: --' + k + ' is required');
      process.exit(1);
    }
  }
  return o;
}

async function main() {
  const o = opts(process.argv);
  const raw = fs.readFileSync(o.message);
  const count = Number(o.count);
  const transport = nodemailer.createTransport({
    pool: true,
    host: o.host,
    port: Number(o.port),
    secure: false,
    requireTLS: true,
    name: 'client.bench.test',
    maxConnections: Number(o.sessions),
    maxMessages: Number(o['msgs-per-conn']),
    connectionTimeout: 30000,
    greetingTimeout: 30000,
    socketTimeout: 60000,
    tls: { ca: fs.readFileSync(o.ca), servername: o.servername, minVersion: 'TLSv1.2',
      rejectUnauthorized: true },
  });
  const t0 = process.hrtime.bigint();
  let ok = 0, failed = 0;
  const errors = {};
  const timer = setTimeout(() => {
    summary(true);
    process.exit(2);
  }, Number(o.timeout) * 1000);

  function summary(timedOut) {
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    const ru = process.resourceUsage();
    console.log(JSON.stringify({ summary: { recipients: count, delivered: ok, failed,
      seconds: s, msgs_per_s: ok / s, cpu_user_s: ru.userCPUTime / 1e6,
      cpu_sys_s: ru.systemCPUTime / 1e6, timeout: timedOut, errors } }));
  }

  const jobs = [];
  for (let i = 0; i < count; i++) {
    jobs.push(transport.sendMail({ envelope: { from: o.from, to: [o.rcpt] }, raw })
      .then(() => { ok++; })
      .catch((e) => {
        failed++;
        const k = String(e.responseCode || e.code || e.message).slice(0, 60);
        errors[k] = (errors[k] || 0) + 1;
      }));
  }
  await Promise.all(jobs);
  clearTimeout(timer);
  transport.close();
  summary(false);
}

main().catch((e) => {
  console.error('send.js: ' + e.stack);
  process.exit(1);
});
