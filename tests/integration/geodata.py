"""The table behind the bundled test geo database (tests/geo/places.tsv, which
tests/geo/mkdb.pl writes to GEO_DB): tests ask it what the database answers
for an address instead of repeating the values.

    place(ip)  -> Place(network, country, continent, registered, latitude,
                  longitude, city, note) of the longest network holding ip
                  (an IPv4-mapped IPv6 address is its IPv4 address), or None;
                  a field the record lacks is None
    PLACES     every row, in file order
    readme_geo_examples(path) -> [(address, region)] of the README's demo
                  X-Forwarded-For curl lines
"""
import collections
import ipaddress
import re

from conftest import GEO_TABLE

Place = collections.namedtuple("Place", "network country continent registered latitude longitude city note")


def _load(path):
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip() or line.startswith("#"):
                continue
            fld = [None if v == "-" else v for v in line.split("\t")]
            if len(fld) < 7:
                raise ValueError("%s:%d: %d fields, want at least 7" % (path, n, len(fld)))
            fld += [None] * (8 - len(fld))
            net = ipaddress.ip_network(fld[0])
            lat = None if fld[4] is None else float(fld[4])
            lon = None if fld[5] is None else float(fld[5])
            rows.append(Place(net, fld[1], fld[2], fld[3], lat, lon, fld[6], fld[7]))
    return rows


PLACES = _load(GEO_TABLE)


def place(ip):
    a = ipaddress.ip_address(ip)
    if a.version == 6 and a.ipv4_mapped is not None:
        a = a.ipv4_mapped
    best = None
    for p in PLACES:
        if p.network.version == a.version and a in p.network:
            if best is None or p.network.prefixlen > best.network.prefixlen:
                best = p
    return best


def located(ip):
    """(country, continent, latitude, longitude) of an address the table
    places with coordinates; fails loudly for one it does not."""
    p = place(ip)
    assert p is not None and p.latitude is not None, "%s has no coordinates in %s" % (ip, GEO_TABLE)
    return (p.country, p.continent, p.latitude, p.longitude)


def readme_geo_examples(readme):
    """The demo's X-Forwarded-For curl lines in a README: [(address, region)]."""
    out = []
    for line in open(readme, encoding="utf-8"):
        m = re.match(r"curl .*-H 'X-Forwarded-For: ([0-9A-Fa-f.:]+)'.*X-Meridian-Region\s+#.*:\s*([a-z0-9-]+)\s*$",
                     line.strip())
        if m:
            out.append((m.group(1), m.group(2)))
    return out
