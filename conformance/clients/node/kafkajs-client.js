// kafkajs producer/consumer for korvet's real-client suite.
//   node kafkajs-client.js produce BOOTSTRAP TOPIC CODEC DATASET.json
//   node kafkajs-client.js consume BOOTSTRAP TOPIC PARTITIONS COUNT
//   node kafkajs-client.js transactions BOOTSTRAP TOPIC TRANSACTIONAL_ID
// Records are {partition, key, value, headers: [[name, value]]} with strings or null.
const fs = require('fs');
const { Kafka, CompressionTypes, logLevel } = require('kafkajs');

// For SASL_SSL: KORVET_CLIENT_SASL=mechanism:user:password (kafkajs's mechanism names, e.g.
// scram-sha-256) and KORVET_CLIENT_CA=ca.pem.
const [command, bootstrap, topic, ...rest] = process.argv.slice(2);
const security = {};
if (process.env.KORVET_CLIENT_SASL) {
  const [mechanism, username, password] = process.env.KORVET_CLIENT_SASL.split(':');
  security.sasl = { mechanism, username, password };
}
if (process.env.KORVET_CLIENT_CA) {
  security.ssl = { ca: [fs.readFileSync(process.env.KORVET_CLIENT_CA, 'utf8')] };
}
const kafka = new Kafka({ clientId: 'korvet-conformance', brokers: [bootstrap], logLevel: logLevel.ERROR, ...security });
const codecs = { none: CompressionTypes.None, gzip: CompressionTypes.GZIP };
const text = (b) => (b === null || b === undefined ? null : b.toString());

async function produce(codec, datasetPath) {
  if (!(codec in codecs)) throw new Error(`kafkajs has no built-in ${codec} codec`);
  const records = JSON.parse(fs.readFileSync(datasetPath, 'utf8'));
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const offsets = [];
  for (const r of records) {
    // kafkajs sends a header only as a value; it has no way to send a null header value.
    const headers = {};
    for (const [k, v] of r.headers) if (v !== null) headers[k] = v;
    const [meta] = await producer.send({
      topic,
      compression: codecs[codec],
      messages: [{ partition: r.partition, key: r.key, value: r.value, headers }],
    });
    offsets.push(Number(meta.baseOffset));
  }
  await producer.disconnect();
  console.log(JSON.stringify(offsets));
}

async function consume(partitions, count) {
  const consumer = kafka.consumer({ groupId: `korvet-conformance-${Date.now()}`, maxBytesPerPartition: 4000000 });
  const out = [];
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const done = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`only ${out.length} of ${count} records within 90s`)), 90000);
    consumer.run({
      autoCommit: false,
      eachMessage: async ({ partition, message }) => {
        const headers = Object.entries(message.headers || {}).map(([k, v]) => [k, text(v)]);
        out.push({ partition, offset: Number(message.offset), key: text(message.key), value: text(message.value), headers });
        if (out.length >= count) { clearTimeout(timer); resolve(); }
      },
    });
  });
  await done;
  await consumer.disconnect();
  console.log(JSON.stringify(out));
}

// A long-running group member: prints {"assigned": [partitions]} after each rebalance and
// {"value": "..."} per record (committing after each), until SIGTERM makes it leave the group.
async function member(groupId) {
  const consumer = kafka.consumer({ groupId, sessionTimeout: 6000, heartbeatInterval: 500, rebalanceTimeout: 10000 });
  const print = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
  consumer.on(consumer.events.GROUP_JOIN, (e) => print({ assigned: (e.payload.memberAssignment[topic] || []) }));
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    autoCommit: false,
    eachMessage: async ({ partition, message }) => {
      print({ value: text(message.value) });
      await consumer.commitOffsets([{ topic, partition, offset: (BigInt(message.offset) + 1n).toString() }]);
    },
  });
  process.on('SIGTERM', async () => { await consumer.disconnect(); process.exit(0); });
}

// A transactional producer: commits "committed-0..4", aborts "aborted-0..2", then prints
// what a read_committed consumer (kafkajs's default isolation) reads from the topic.
async function transactions(transactionalId) {
  const producer = kafka.producer({ transactionalId, idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const send = async (prefix, count, end) => {
    const transaction = await producer.transaction();
    await transaction.send({ topic, messages: [...Array(count).keys()].map((i) => ({ partition: 0, value: `${prefix}-${i}` })) });
    await (end === 'commit' ? transaction.commit() : transaction.abort());
  };
  await send('committed', 5, 'commit');
  await send('aborted', 3, 'abort');
  await producer.disconnect();
  const consumer = kafka.consumer({ groupId: `korvet-txn-${Date.now()}` });
  const out = [];
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await new Promise((resolve) => {
    consumer.run({ eachMessage: async ({ message }) => { out.push(text(message.value)); } });
    // Long enough for every committed record and, if they were served, the aborted ones.
    setTimeout(resolve, 8000);
  });
  await consumer.disconnect();
  console.log(JSON.stringify(out.sort()));
}

(async () => {
  if (command === 'produce') await produce(rest[0], rest[1]);
  else if (command === 'transactions') await transactions(rest[0]);
  else if (command === 'consume') await consume(Number(rest[0]), Number(rest[1]));
  else if (command === 'member') await member(rest[0]);
  else throw new Error('usage: produce|consume ...');
})().catch((err) => { console.error(err.stack || String(err)); process.exit(1); });
