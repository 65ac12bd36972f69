"""The project's own reference stays complete: every configuration key of the
schema (src/core/config_schema.c, parsed here) is documented in
doc/configuration.md's key table and appears in conf/example.yaml, nothing
documented is missing from either, and conf/example.yaml passes `meridian -t`
(with its production-only file paths pointed at test files)."""
import os
import re
import subprocess

import yaml

from conftest import GEO_DB, MERIDIAN_BIN, REPO

SCHEMA = os.path.join(REPO, "src", "core", "config_schema.c")
DOC = os.path.join(REPO, "doc", "configuration.md")
EXAMPLE = os.path.join(REPO, "conf", "example.yaml")


def schema_keys():
    """Dotted key paths from the key tables of config_schema.c: tables are
    `static const struct mrd_conf_key X_keys[] = {...}`, wrapped by
    `X_table = TABLE(X_keys, ...)` and, for lists of mappings,
    `X_seq = {sizeof(...), &X_table, ...}`; a key's `.aux = &..._table` is a
    nested mapping and `.aux = &..._seq` a list of them ("[]")."""
    src = open(SCHEMA).read()
    tables = {}
    for m in re.finditer(r"static const struct mrd_conf_key (\w+)\[\] = \{(.*?)\n\};", src, re.S):
        entries = []
        for line in re.split(r"\n(?=    (?:\[\w+\] = )?(?:\{|DUR\())", m.group(2)):
            k = re.search(r'(?:\{|DUR\()"([a-z_]+)"', line)
            if not k:
                continue
            aux = re.search(r"\.aux = &(\w+)", line)
            entries.append((k.group(1), aux.group(1) if aux else None))
        tables[m.group(1)] = entries
    table_of = {name: keys for name, keys in re.findall(r"(\w+_table) = TABLE\((\w+),", src)}
    seq_of = {name: t for name, t in re.findall(r"(\w+_seq) = \{sizeof\([^)]*\), &(\w+_table)", src)}
    out = set()

    def walk(keys_name, prefix):
        for key, aux in tables[keys_name]:
            path = prefix + key
            if aux in seq_of:
                out.add(path)
                walk(table_of[seq_of[aux]], path + "[].")
            elif aux in table_of:
                out.add(path)
                walk(table_of[aux], path + ".")
            else:
                out.add(path)

    walk(table_of["mrd_conf_top_table"], "")
    return out


def doc_keys():
    """First column of the key table(s) of doc/configuration.md: rows
    starting with | `dotted.key` |"""
    keys = set()
    for line in open(DOC):
        m = re.match(r"\|\s*`([a-z_][a-z_.\[\]]*)`\s*\|", line)
        if m:
            keys.add(m.group(1))
    return keys


def example_keys():
    out = set()

    def walk(node, prefix):
        if isinstance(node, dict):
            for k, v in node.items():
                path = prefix + str(k)
                out.add(path)
                if isinstance(v, list) and any(isinstance(i, dict) for i in v):
                    for i in v:
                        walk(i, path + "[].")
                else:
                    walk(v, path + ".")
    walk(yaml.safe_load(open(EXAMPLE)), "")
    return out


def test_schema_parse_finds_the_known_keys():
    s = schema_keys()
    for k in ("workers", "listeners[].tls.certificates[].cert", "geo.reload_check", "geo.networks[].cidr",
              "regions[].health_check.expect_status", "policies.residency[].match.countries",
              "error_log.level", "timeouts.shutdown"):
        assert k in s, (k, sorted(s))
    assert len(s) > 60, sorted(s)


def test_every_schema_key_is_documented_and_nothing_else():
    s, d = schema_keys(), doc_keys()
    assert not (s - d), "keys missing from doc/configuration.md: %s" % sorted(s - d)
    assert not (d - s), "doc/configuration.md documents keys the schema lacks: %s" % sorted(d - s)


def test_every_documented_key_is_in_the_example():
    d, e = doc_keys(), example_keys()
    assert not (d - e), "keys missing from conf/example.yaml: %s" % sorted(d - e)
    assert not (e - schema_keys()), "conf/example.yaml has keys the schema lacks: %s" % sorted(e - schema_keys())


def test_example_passes_meridian_t(tmp_path):
    # the certificate and database paths name files of a production host:
    # point them at a fresh self-signed pair and the test database
    crt, key = tmp_path / "edge.crt", tmp_path / "edge.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(crt), "-days", "2", "-subj", "/CN=edge.test"],
                   check=True, capture_output=True, timeout=60)
    text = open(EXAMPLE).read()
    text = text.replace("conf/tls/edge.crt", str(crt)).replace("conf/tls/edge.key", str(key))
    # upstream_tls: the same pair as the CA to trust and as the client certificate
    text = text.replace("conf/tls/upstream-ca.crt", str(crt))
    text = text.replace("conf/tls/client.crt", str(crt)).replace("conf/tls/client.key", str(key))
    text = re.sub(r"(?m)^(\s*database: )/.*$", lambda m: m.group(1) + '"%s"' % GEO_DB, text)
    # cluster.redis.password_file is read at load
    pw = tmp_path / "redis.pass"
    pw.write_text("s3cret\n")
    assert "/etc/meridian/redis.pass" in text
    text = text.replace("/etc/meridian/redis.pass", str(pw))
    conf = tmp_path / "example.yaml"
    conf.write_text(text)
    p = subprocess.run([MERIDIAN_BIN, "-t", "-c", str(conf)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "configuration is valid" in p.stdout, p.stdout
