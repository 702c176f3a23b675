#!/usr/bin/env python3
"""What security costs: the same produce and consume runs (korvet-bench, librdkafka) through a
PLAINTEXT listener and through a SASL_SSL listener (TLS 1.3, SCRAM-SHA-512) of one korvet on one
Redis, alternating, three rounds, medians compared. Writes security.md into the output directory.

    python3 bench/security.py            # about two minutes
    python3 bench/security.py --quick    # small counts: checks the machinery
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # the single-Redis benchmark's helpers

ROOT = run.ROOT


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def certificates(folder):
    path = lambda name: os.path.join(folder, name)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", path("ca.key"), "-out", path("ca.pem"), "-days", "2", "-subj", "/CN=bench-ca")
    with open(path("san.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", path("server.key"), "-out", path("server.csr"), "-subj", "/CN=127.0.0.1")
    openssl("x509", "-req", "-in", path("server.csr"), "-CA", path("ca.pem"), "-CAkey", path("ca.key"), "-CAcreateserial",
            "-out", path("server.pem"), "-days", "2", "-extfile", path("san.ext"))
    return path


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench"))
    parser.add_argument("--no-build", action="store_true")
    args = parser.parse_args()
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "korvet", "--bin", "korvet-bench"], cwd=ROOT, check=True)
    records = 20_000 if args.quick else 400_000
    rounds = 1 if args.quick else 3
    folder = tempfile.mkdtemp(prefix="korvet-bench-certs-")
    cert = certificates(folder)
    sasl_port = run.free_port()
    procs = run.Processes({
        "KORVET_SERVER_LISTENERS": f"SASL_SSL://127.0.0.1:{sasl_port}",
        "KORVET_TLS_CERT_FILE": cert("server.pem"),
        "KORVET_TLS_KEY_FILE": cert("server.key"),
    })
    results = {"PLAINTEXT": {"produce": [], "consume": []}, "SASL_SSL": {"produce": [], "consume": []}}
    try:
        subprocess.run([os.path.join(run.RELEASE, "korvet"), "users", "--bootstrap-server", procs.bootstrap, "set", "bench", "--password", "bench-password"],
                       check=True, capture_output=True, timeout=60)
        sasl_ssl = ";".join(["security.protocol=SASL_SSL", "sasl.mechanism=SCRAM-SHA-512", "sasl.username=bench",
                             "sasl.password=bench-password", f"ssl.ca.location={cert('ca.pem')}"])
        for round_ in range(rounds):
            for name, bootstrap, client in (("PLAINTEXT", procs.bootstrap, ""), ("SASL_SSL", f"127.0.0.1:{sasl_port}", sasl_ssl)):
                os.environ["KORVET_CLIENT_CONFIG"] = client
                topic = f"security-{name}-{round_}"
                run.create_topic(procs, topic, 1)
                with run.Sampler([procs.korvet.pid]) as sampled:
                    produced = run.bench("produce", "--bootstrap", bootstrap, "--topic", topic, "--records", records, "--size", 100, "--acks", "1")
                produced["korvet_cpu_s"] = sampled.cpu[procs.korvet.pid]
                results[name]["produce"].append(produced)
                with run.Sampler([procs.korvet.pid]) as sampled:
                    consumed = run.bench("consume", "--bootstrap", bootstrap, "--topic", topic, "--records", records)
                consumed["korvet_cpu_s"] = sampled.cpu[procs.korvet.pid]
                results[name]["consume"].append(consumed)
    finally:
        os.environ.pop("KORVET_CLIENT_CONFIG", None)
        procs.close()
        shutil.rmtree(folder, ignore_errors=True)
    median = lambda runs, key: statistics.median(r[key] for r in runs)
    lines = [
        "# korvet: PLAINTEXT against SASL_SSL (TLS 1.3, SCRAM-SHA-512)",
        "",
        f"One korvet and one Redis, 100-byte records, 1 partition, acks=1, korvet-bench (librdkafka), {records:,} records per run, "
        f"median of {rounds} rounds run alternately, {os.cpu_count()} cores shared by korvet, Redis and the client.",
        "",
        "| listener | produce records/s | produce p99 ms (a flood: queueing) | consume records/s | korvet CPU µs per record (produce / consume) |",
        "|---|---|---|---|---|",
    ]
    for name in ("PLAINTEXT", "SASL_SSL"):
        r = results[name]
        cpu = lambda kind: median(r[kind], "korvet_cpu_s") / records * 1e6
        lines.append(f"| {name} | {median(r['produce'], 'records_per_s'):,.0f} | {median(r['produce'], 'p99_ms'):.1f} | "
                     f"{median(r['consume'], 'records_per_s'):,.0f} | {cpu('produce'):.2f} / {cpu('consume'):.2f} |")
    ratio = lambda kind: median(results["SASL_SSL"][kind], "records_per_s") / median(results["PLAINTEXT"][kind], "records_per_s")
    lines += ["", f"SASL_SSL runs at {ratio('produce'):.0%} of PLAINTEXT's produce rate and {ratio('consume'):.0%} of its consume rate.", ""]
    text = "\n".join(lines)
    if not args.quick:
        with open(os.path.join(args.out, "security.md"), "w") as f:
            f.write(text)
    print(text)


if __name__ == "__main__":
    main()
