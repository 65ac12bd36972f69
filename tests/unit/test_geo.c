/*
 * test_geo.c: haversine distance and the geography factor against values
 * computed by hand, the geo.networks longest-prefix match (nested prefixes,
 * IPv6, IPv4-mapped, a 1000-network table cross-checked against a linear
 * scan), the network -> database -> default -> unknown chain, and real
 * lookups in the project's test database. That database is written from
 * tests/geo/places.tsv by tests/geo/mkdb.pl (`make geodb`), and this test reads
 * the same table to know what each lookup must return: the table is the only
 * place the expected values live. MRD_GEO_DB names the database (`make unit`
 * sets it; default build/geo/meridian-test-city.mmdb), MRD_GEO_TABLE the
 * table (default tests/geo/places.tsv). Run from the repository root.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

#include "meridian/addr.h"
#include "meridian/config.h"
#include "meridian/geo.h"

#define CITY_DB geo_db_path()
#define COUNTRY_DB geo_country_db_path()
#define PLACES geo_table_path()

#define CHECK(cond, name)                                                                                      \
    do {                                                                                                       \
        if (!(cond))                                                                                           \
            fail_msg("case \"%s\": check failed: %s (line %d)", (name), #cond, __LINE__);                    \
    } while (0)

/* ---- helpers ---- */

/* conf.database is a plain char *: the paths live in static buffers */
static char *
env_or(const char *name, const char *dflt, char *buf, size_t len)
{
    const char *v = getenv(name);

    snprintf(buf, len, "%s", v != NULL && *v != '\0' ? v : dflt);
    return buf;
}

/* the same table without coordinates, in the GeoIP2-Country layout */
static char *
geo_country_db_path(void)
{
    static char buf[4096];

    return env_or("MRD_GEO_COUNTRY_DB", "build/geo/meridian-test-country.mmdb", buf, sizeof(buf));
}

static char *
geo_db_path(void)
{
    static char buf[4096];

    return env_or("MRD_GEO_DB", "build/geo/meridian-test-city.mmdb", buf, sizeof(buf));
}

static char *
geo_table_path(void)
{
    static char buf[4096];

    return env_or("MRD_GEO_TABLE", "tests/geo/places.tsv", buf, sizeof(buf));
}

static struct mrd_ip
ip_of(const char *s)
{
    struct mrd_ip ip;

    if (mrd_ip_parse(s, strlen(s), &ip) != 0)
        fail_msg("bad test address %s", s);
    return ip;
}

static void
set_net(struct mrd_geo_network_conf *nw, const char *cidr, const char *country, const char *continent,
        int has_location, double lat, double lon)
{
    const char *err = NULL;

    memset(nw, 0, sizeof(*nw));
    if (mrd_cidr_parse(cidr, &nw->cidr, &err) != 0)
        fail_msg("bad test cidr %s: %s", cidr, err);
    snprintf(nw->country, sizeof(nw->country), "%s", country);
    snprintf(nw->continent, sizeof(nw->continent), "%s", continent);
    nw->has_location = has_location;
    nw->latitude = lat;
    nw->longitude = lon;
}

/* The test database is part of the contract of these tests: a missing file
 * is a failure, never a skip. */
static void
require_file(const char *path)
{
    if (access(path, R_OK) != 0)
        fail_msg("geo test file %s is missing or unreadable (tests run from the repository root; "
                 "`make geodb` writes the database from tests/geo/places.tsv)",
                 path);
}

struct want {
    const char *ip;
    const char *country, *continent;
    int known;
    double lat, lon;
    enum mrd_geo_source source;
};

/* ---- the table behind the test database (tests/geo/places.tsv) ---- */

struct place {
    char network[64];
    struct mrd_cidr cidr;
    char country[3], continent[3], registered[3];
    int has_location;
    double lat, lon;
    char city[64];
};

#define MAX_PLACES 256
static struct place places[MAX_PLACES];
static size_t n_places;

static void
field_code(char out[3], const char *f, const char *what, int line)
{
    if (strcmp(f, "-") == 0) {
        out[0] = '\0';
        return;
    }
    if (strlen(f) != 2)
        fail_msg("%s:%d: %s \"%s\" is not a two-letter code", PLACES, line, what, f);
    memcpy(out, f, 3);
}

/* Reads the table once; fails the test on anything malformed. */
static void
load_places(void)
{
    FILE *f;
    char buf[1024];
    int line = 0;

    if (n_places > 0)
        return;
    require_file(PLACES);
    f = fopen(PLACES, "r");
    assert_non_null(f);
    while (fgets(buf, sizeof(buf), f) != NULL) {
        char *fld[8] = {0}, *p = buf, *nl;
        size_t nf = 0;
        struct place *pl;
        const char *err = NULL;

        line++;
        if ((nl = strchr(buf, '\n')) != NULL)
            *nl = '\0';
        if (buf[0] == '#' || buf[0] == '\0')
            continue;
        while (nf < 8) {
            fld[nf++] = p;
            if ((p = strchr(p, '\t')) == NULL)
                break;
            *p++ = '\0';
        }
        if (nf < 7)
            fail_msg("%s:%d: %zu fields, want at least 7", PLACES, line, nf);
        if (n_places == MAX_PLACES)
            fail_msg("%s: more than %d networks", PLACES, MAX_PLACES);
        pl = &places[n_places++];
        memset(pl, 0, sizeof(*pl));
        snprintf(pl->network, sizeof(pl->network), "%s", fld[0]);
        if (mrd_cidr_parse(fld[0], &pl->cidr, &err) != 0)
            fail_msg("%s:%d: bad network %s: %s", PLACES, line, fld[0], err);
        field_code(pl->country, fld[1], "country", line);
        field_code(pl->continent, fld[2], "continent", line);
        field_code(pl->registered, fld[3], "registered", line);
        if (strcmp(fld[4], "-") != 0) {
            pl->has_location = 1;
            pl->lat = strtod(fld[4], NULL);
            pl->lon = strtod(fld[5], NULL);
        }
        snprintf(pl->city, sizeof(pl->city), "%s", strcmp(fld[6], "-") == 0 ? "" : fld[6]);
    }
    fclose(f);
    if (n_places == 0)
        fail_msg("%s: no networks", PLACES);
}

/* The table row whose network holds ip (the longest), or NULL. */
static const struct place *
place_of(const char *ip_text)
{
    struct mrd_ip ip;
    const struct place *best = NULL;

    load_places();
    if (mrd_ip_parse(ip_text, strlen(ip_text), &ip) != 0)
        fail_msg("bad test address %s", ip_text);
    for (size_t i = 0; i < n_places; i++)
        if (mrd_cidr_match(&places[i].cidr, &ip) && (best == NULL || places[i].cidr.prefix > best->cidr.prefix))
            best = &places[i];
    return best;
}

static const struct place *
place_or_fail(const char *ip)
{
    const struct place *pl = place_of(ip);

    if (pl == NULL)
        fail_msg("%s is in no network of %s, but this test needs it there", ip, PLACES);
    return pl;
}

/* First (last = 0) or last address of a place's network, as text; IPv4 as
 * ::ffff:a.b.c.d when mapped is set. */
static void
place_addr(const struct place *pl, int last, int mapped, char *out, size_t len)
{
    struct mrd_ip ip = pl->cidr.ip;
    unsigned bits = ip.family == AF_INET ? 32 : 128;
    char text[INET6_ADDRSTRLEN];

    if (last)
        for (unsigned b = pl->cidr.prefix; b < bits; b++)
            ip.bytes[b / 8] |= (uint8_t)(0x80u >> (b % 8));
    inet_ntop(ip.family, ip.bytes, text, sizeof(text));
    snprintf(out, len, "%s%s", mapped && ip.family == AF_INET ? "::ffff:" : "", text);
}

/* What the chain database -> country centroid -> default -> unknown gives
 * for a table row (a record without a country takes its registered one). */
static struct want
want_of_place(const char *ip, const struct place *pl, int has_default, double dlat, double dlon)
{
    const char *country = pl->country[0] ? pl->country : pl->registered;
    struct want w = {.ip = ip, .country = country, .continent = pl->continent};
    const struct mrd_country_centroid *cc = country[0] ? mrd_country_centroid(country) : NULL;

    if (pl->has_location) {
        w.known = 1, w.lat = pl->lat, w.lon = pl->lon, w.source = MRD_GEO_DATABASE;
    } else if (cc != NULL) {
        w.known = 1, w.lat = cc->latitude, w.lon = cc->longitude, w.source = MRD_GEO_COUNTRY;
    } else if (has_default) {
        w.known = 1, w.lat = dlat, w.lon = dlon, w.source = MRD_GEO_DEFAULT;
    } else {
        w.source = MRD_GEO_UNKNOWN;
    }
    return w;
}

static struct mrd_geo *
geo_or_fail(const struct mrd_geo_conf *conf)
{
    const char *err = NULL;
    struct mrd_geo *g = mrd_geo_new(conf, &err);

    if (g == NULL)
        fail_msg("mrd_geo_new failed: %s", err != NULL ? err : "(no message)");
    return g;
}

static void
check_locate(const struct mrd_geo *g, const struct want *w)
{
    struct mrd_ip ip = ip_of(w->ip);
    struct mrd_location loc;

    mrd_geo_locate(g, &ip, &loc);
    CHECK(strcmp(loc.country, w->country) == 0, w->ip);
    CHECK(strcmp(loc.continent, w->continent) == 0, w->ip);
    CHECK(loc.known == w->known, w->ip);
    CHECK(loc.source == w->source, w->ip);
    if (w->known) {
        CHECK(fabs(loc.latitude - w->lat) < 1e-6, w->ip);
        CHECK(fabs(loc.longitude - w->lon) < 1e-6, w->ip);
    } else {
        CHECK(loc.latitude == 0 && loc.longitude == 0, w->ip);
    }
}

static void
check_table(const struct mrd_geo *g, const struct want *w, size_t n)
{
    for (size_t i = 0; i < n; i++)
        check_locate(g, &w[i]);
}

/* ---- geo math ---- */

/*
 * Expected distances, by hand (python3 math, double precision):
 *   d = 2 R asin(sqrt(a)),  a = sin^2(dphi/2) + cos(phi1) cos(phi2) sin^2(dlambda/2),
 *   R = 6371.0088 km, angles in radians.
 * London (51.5074, -0.1278) - Paris (48.8566, 2.3522):
 *   dphi = -0.04626519, dlambda = 0.04328417, a = 0.0007267998,
 *   central angle 0.0539249820 rad, d = 343.5565 km.
 * New York (40.7128, -74.0060) - Los Angeles (34.0522, -118.2437):
 *   dphi = -0.11624940, dlambda = -0.77209352, a = 0.0924109108,
 *   central angle 0.6177595754 rad, d = 3935.7517 km.
 * Tokyo (35.6762, 139.6503) - Sydney (-33.8688, 151.2093):
 *   dphi = -1.21378923, dlambda = 0.20174261, a = 0.3321038677,
 *   central angle 1.2283501203 rad, d = 7825.8294 km.
 * (0, 0) - (0, 180) and pole to pole: a = 1, angle pi, d = pi R = 20015.1144 km.
 * (0, 0) - (0, 90): angle pi/2, d = 10007.5572 km.
 * (0, 179.5) - (0, -179.5): across the antimeridian, 1 degree of the
 *   equator, d = R pi / 180 = 111.1951 km.
 */
static void
test_haversine(void **state)
{
    static const struct {
        const char *name;
        double lat1, lon1, lat2, lon2, km;
    } cases[] = {
        {"London-Paris", 51.5074, -0.1278, 48.8566, 2.3522, 343.5565},
        {"NewYork-LosAngeles", 40.7128, -74.0060, 34.0522, -118.2437, 3935.7517},
        {"Tokyo-Sydney", 35.6762, 139.6503, -33.8688, 151.2093, 7825.8294},
        {"antipodes", 0, 0, 0, 180, 20015.1144},
        {"pole-to-pole", 90, 0, -90, 0, 20015.1144},
        {"quarter", 0, 0, 0, 90, 10007.5572},
        {"antimeridian", 0, 179.5, 0, -179.5, 111.1951},
        {"same point", 51.5, -0.1, 51.5, -0.1, 0},
        {"same pole, other lon", 90, 0, 90, 123, 0},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        double d = mrd_haversine_km(cases[i].lat1, cases[i].lon1, cases[i].lat2, cases[i].lon2);
        double back = mrd_haversine_km(cases[i].lat2, cases[i].lon2, cases[i].lat1, cases[i].lon1);

        if (fabs(d - cases[i].km) > 0.1)
            fail_msg("%s: got %.4f km, want %.4f km", cases[i].name, d, cases[i].km);
        CHECK(fabs(d - back) < 1e-9, cases[i].name);
        CHECK(d >= 0, cases[i].name);
    }
    assert_true(mrd_haversine_km(1, 2, 1, 2) == 0.0);
}

/* g = 1 - d / 20015.1, clamped: London-Paris 0.982835, a quarter of the
 * globe 0.499999639, antipodes (20015.1144 > 20015.1) clamp to 0. */
static void
test_geo_factor(void **state)
{
    assert_true(mrd_geo_factor(0) == 1.0);
    assert_true(fabs(mrd_geo_factor(343.5565) - 0.982835) < 1e-6);
    assert_true(fabs(mrd_geo_factor(mrd_haversine_km(0, 0, 0, 90)) - 0.499999639) < 1e-9);
    assert_true(mrd_geo_factor(20015.1) == 0.0);
    assert_true(mrd_geo_factor(mrd_haversine_km(0, 0, 0, 180)) == 0.0);
    assert_true(mrd_geo_factor(30000) == 0.0);
    assert_true(mrd_geo_factor(-5) == 1.0);
    assert_true(mrd_geo_factor(NAN) == 0.0);
    /* the /v1/route example of SPEC 4: 81.2.69.142 to Dublin (53.3498, -6.2603) */
    assert_true(fabs(mrd_geo_factor(mrd_haversine_km(51.5142, -0.0931, 53.3498, -6.2603)) - 0.9768) < 1e-4);
}

static void
test_source_names(void **state)
{
    assert_string_equal(mrd_geo_source_name(MRD_GEO_NETWORK), "network");
    assert_string_equal(mrd_geo_source_name(MRD_GEO_DATABASE), "database");
    assert_string_equal(mrd_geo_source_name(MRD_GEO_DEFAULT), "default");
    assert_string_equal(mrd_geo_source_name(MRD_GEO_COUNTRY), "country");
    assert_string_equal(mrd_geo_source_name(MRD_GEO_UNKNOWN), "unknown");
    assert_string_equal(mrd_geo_source_name((enum mrd_geo_source)42), "unknown");
}

/* ---- longest-prefix match ---- */

static void
test_lpm_nested_v4(void **state)
{
    struct mrd_geo_network_conf nets[8];
    struct mrd_geo_conf conf = {.networks = nets, .n_networks = 8};
    struct mrd_geo *g;
    /* listed out of order on purpose: the longest prefix wins, not the first */
    static const struct want w[] = {
        {"10.1.2.3", "IE", "EU", 1, 53.0, -6.0, MRD_GEO_NETWORK},    /* /32 */
        {"10.1.2.4", "GB", "EU", 1, 51.0, 0.0, MRD_GEO_NETWORK},     /* /24 */
        {"10.1.2.255", "GB", "EU", 1, 51.0, 0.0, MRD_GEO_NETWORK},   /* /24 */
        {"10.1.3.1", "FR", "EU", 1, 48.0, 2.0, MRD_GEO_NETWORK},     /* /16 */
        {"10.1.255.255", "FR", "EU", 1, 48.0, 2.0, MRD_GEO_NETWORK}, /* /16 */
        {"10.0.0.0", "DE", "EU", 1, 50.0, 8.0, MRD_GEO_NETWORK},     /* /8 */
        {"10.127.255.255", "DE", "EU", 1, 50.0, 8.0, MRD_GEO_NETWORK}, /* /8, just below the /9 */
        {"10.128.0.0", "US", "NA", 1, 40.0, -74.0, MRD_GEO_NETWORK},   /* /9, mid-byte */
        {"10.255.255.255", "US", "NA", 1, 40.0, -74.0, MRD_GEO_NETWORK},
        {"10.4.9.9", "NL", "EU", 1, 52.0, 4.0, MRD_GEO_NETWORK},
        {"10.5.9.9", "BE", "EU", 1, 50.8, 4.4, MRD_GEO_NETWORK},
        /* inside the /8, off the 10.4/16 - 10.5/16 pair: still the /8 (the
         * trie's branch nodes carry their ancestors' entry) */
        {"10.6.0.1", "DE", "EU", 1, 50.0, 8.0, MRD_GEO_NETWORK},
        {"10.7.255.1", "DE", "EU", 1, 50.0, 8.0, MRD_GEO_NETWORK},
        {"192.168.7.7", "", "", 1, -33.0, 151.0, MRD_GEO_NETWORK},   /* host route, coordinates only */
        {"192.168.7.6", "", "", 0, 0, 0, MRD_GEO_UNKNOWN},
        {"11.0.0.1", "", "", 0, 0, 0, MRD_GEO_UNKNOWN},
        {"9.255.255.255", "", "", 0, 0, 0, MRD_GEO_UNKNOWN},
        {"::a01:203", "", "", 0, 0, 0, MRD_GEO_UNKNOWN}, /* IPv6 never matches an IPv4 network */
    };

    set_net(&nets[0], "10.1.2.0/24", "GB", "EU", 1, 51.0, 0.0);
    set_net(&nets[1], "10.0.0.0/8", "DE", "EU", 1, 50.0, 8.0);
    set_net(&nets[2], "10.1.2.3/32", "IE", "EU", 1, 53.0, -6.0);
    set_net(&nets[3], "10.1.0.0/16", "FR", "EU", 1, 48.0, 2.0);
    set_net(&nets[4], "10.128.0.0/9", "US", "NA", 1, 40.0, -74.0);
    set_net(&nets[5], "192.168.7.7", "", "", 1, -33.0, 151.0);
    set_net(&nets[6], "10.4.0.0/16", "NL", "EU", 1, 52.0, 4.0);
    set_net(&nets[7], "10.5.0.0/16", "BE", "EU", 1, 50.8, 4.4);
    g = geo_or_fail(&conf);
    check_table(g, w, sizeof(w) / sizeof(w[0]));
    mrd_geo_free(g);
}

static void
test_lpm_v6_and_mapped(void **state)
{
    struct mrd_geo_network_conf nets[6];
    struct mrd_geo_conf conf = {.networks = nets, .n_networks = 6};
    struct mrd_geo *g;
    static const struct want w[] = {
        {"2001:db8:1:2::1", "JP", "AS", 1, 35.0, 139.0, MRD_GEO_NETWORK},            /* /128 */
        {"2001:db8:1:2::2", "KR", "AS", 1, 37.0, 127.0, MRD_GEO_NETWORK},            /* /64 */
        {"2001:db8:1:2:ffff:ffff:ffff:ffff", "KR", "AS", 1, 37.0, 127.0, MRD_GEO_NETWORK},
        {"2001:db8:1:3::1", "CN", "AS", 1, 39.0, 116.0, MRD_GEO_NETWORK},            /* /48 */
        {"2001:db8:ffff::1", "SG", "AS", 1, 1.3, 103.8, MRD_GEO_NETWORK},            /* /32 */
        {"2001:db9::1", "", "", 0, 0, 0, MRD_GEO_UNKNOWN},
        {"::1", "", "", 0, 0, 0, MRD_GEO_UNKNOWN},
        /* the mapped network "::ffff:192.0.2.0/120" is 192.0.2.0/24 ... */
        {"192.0.2.5", "BR", "SA", 1, -23.5, -46.6, MRD_GEO_NETWORK},
        /* ... and so is a client seen on a dual-stack socket */
        {"::ffff:192.0.2.77", "BR", "SA", 1, -23.5, -46.6, MRD_GEO_NETWORK},
        {"::ffff:198.51.100.1", "AU", "OC", 1, -33.9, 151.2, MRD_GEO_NETWORK},
        /* v4-compatible (::a.b.c.d) is IPv6, not mapped: no match */
        {"::192.0.2.5", "", "", 0, 0, 0, MRD_GEO_UNKNOWN},
        {"192.0.3.1", "", "", 0, 0, 0, MRD_GEO_UNKNOWN},
    };

    set_net(&nets[0], "2001:db8::/32", "SG", "AS", 1, 1.3, 103.8);
    set_net(&nets[1], "2001:db8:1::/48", "CN", "AS", 1, 39.0, 116.0);
    set_net(&nets[2], "2001:db8:1:2::/64", "KR", "AS", 1, 37.0, 127.0);
    set_net(&nets[3], "2001:db8:1:2::1/128", "JP", "AS", 1, 35.0, 139.0);
    set_net(&nets[4], "::ffff:192.0.2.0/120", "BR", "SA", 1, -23.5, -46.6);
    set_net(&nets[5], "198.51.100.0/24", "AU", "OC", 1, -33.9, 151.2);
    assert_int_equal(nets[4].cidr.ip.family, AF_INET);
    g = geo_or_fail(&conf);
    check_table(g, w, sizeof(w) / sizeof(w[0]));
    mrd_geo_free(g);
}

/* /0 catches everything of its own family only; same CIDR twice: the first
 * listed wins. */
static void
test_lpm_default_routes_and_duplicates(void **state)
{
    struct mrd_geo_network_conf nets[4];
    struct mrd_geo_conf conf = {.networks = nets, .n_networks = 4};
    struct mrd_geo *g;
    static const struct want w[] = {
        {"1.2.3.4", "US", "NA", 1, 10.0, 10.0, MRD_GEO_NETWORK},
        {"255.255.255.255", "US", "NA", 1, 10.0, 10.0, MRD_GEO_NETWORK},
        {"203.0.113.9", "NZ", "OC", 1, -41.0, 174.0, MRD_GEO_NETWORK},
        {"2001:db8::1", "", "EU", 1, 20.0, 20.0, MRD_GEO_NETWORK},
        {"::", "", "EU", 1, 20.0, 20.0, MRD_GEO_NETWORK},
    };

    set_net(&nets[0], "0.0.0.0/0", "US", "NA", 1, 10.0, 10.0);
    set_net(&nets[1], "::/0", "", "EU", 1, 20.0, 20.0);
    set_net(&nets[2], "203.0.113.0/24", "NZ", "OC", 1, -41.0, 174.0);
    set_net(&nets[3], "203.0.113.0/24", "FJ", "OC", 1, -18.0, 178.0); /* shadowed */
    g = geo_or_fail(&conf);
    check_table(g, w, sizeof(w) / sizeof(w[0]));
    mrd_geo_free(g);
}

/* Without a database: network, else default_location, else unknown. */
static void
test_chain_without_database(void **state)
{
    struct mrd_geo_network_conf nets[3];
    struct mrd_geo_conf conf = {.networks = nets, .n_networks = 3};
    struct mrd_geo *g;
    static const struct want with_default[] = {
        {"10.1.1.1", "DE", "EU", 1, 50.11, 8.68, MRD_GEO_NETWORK},
        /* identity only: coordinates from the country's centroid, before the default */
        {"10.2.0.1", "FR", "EU", 1, 46.23, 2.21, MRD_GEO_COUNTRY},
        /* a country the centroid table lacks: the default */
        {"10.3.0.1", "ZZ", "", 1, 38.9, -77.0, MRD_GEO_DEFAULT},
        {"8.8.8.8", "", "", 1, 38.9, -77.0, MRD_GEO_DEFAULT},
        {"2001:db8::1", "", "", 1, 38.9, -77.0, MRD_GEO_DEFAULT},
    };
    static const struct want without_default[] = {
        {"10.1.1.1", "DE", "EU", 1, 50.11, 8.68, MRD_GEO_NETWORK},
        {"10.2.0.1", "FR", "EU", 1, 46.23, 2.21, MRD_GEO_COUNTRY},
        {"10.3.0.1", "ZZ", "", 0, 0, 0, MRD_GEO_UNKNOWN},
        {"8.8.8.8", "", "", 0, 0, 0, MRD_GEO_UNKNOWN},
    };
    struct mrd_geo_conf empty = {0};
    struct mrd_location loc;
    struct mrd_ip ip = ip_of("10.1.1.1");

    set_net(&nets[0], "10.1.0.0/16", "DE", "EU", 1, 50.11, 8.68);
    set_net(&nets[1], "10.2.0.0/16", "FR", "EU", 0, 0, 0);
    set_net(&nets[2], "10.3.0.0/16", "ZZ", "", 0, 0, 0);
    conf.has_default_location = 1;
    conf.default_latitude = 38.9;
    conf.default_longitude = -77.0;
    g = geo_or_fail(&conf);
    check_table(g, with_default, sizeof(with_default) / sizeof(with_default[0]));
    mrd_geo_free(g);

    conf.has_default_location = 0;
    g = geo_or_fail(&conf);
    check_table(g, without_default, sizeof(without_default) / sizeof(without_default[0]));
    mrd_geo_free(g);

    /* nothing configured at all, and a NULL table */
    g = geo_or_fail(&empty);
    mrd_geo_locate(g, &ip, &loc);
    assert_int_equal(loc.known, 0);
    assert_int_equal(loc.source, MRD_GEO_UNKNOWN);
    mrd_geo_free(g);
    mrd_geo_locate(NULL, &ip, &loc);
    assert_int_equal(loc.known, 0);
    assert_string_equal(loc.country, "");
    mrd_geo_free(NULL);
}

/* Networks before the database; each part (identity, coordinates) from the
 * first source that has it. The database's answers come from the table. */
static void
test_chain_with_database(void **state)
{
    struct mrd_geo_network_conf nets[4];
    struct mrd_geo_conf conf = {.networks = nets, .n_networks = 4, .database = CITY_DB};
    struct mrd_geo *g;
    const struct place *se = place_or_fail("89.160.20.128"), *us = place_or_fail("216.160.83.58");
    const struct place *gb2 = place_or_fail("2.125.160.216");
    struct want w[] = {
        /* the network overrides the database completely */
        {"81.2.69.142", "FR", "EU", 1, 48.85, 2.35, MRD_GEO_NETWORK},
        /* network identity, database coordinates */
        {"89.160.20.128", "NO", "EU", 1, se->lat, se->lon, MRD_GEO_DATABASE},
        /* network coordinates, database identity */
        {"216.160.83.58", us->country, us->continent, 1, 47.0, -122.0, MRD_GEO_NETWORK},
        /* network identity, no coordinates anywhere: the country's centroid */
        {"1.1.1.1", "AU", "OC", 1, -25.27, 133.78, MRD_GEO_COUNTRY},
        /* not in any network: the database */
        {"2.125.160.216", gb2->country, gb2->continent, 1, gb2->lat, gb2->lon, MRD_GEO_DATABASE},
        /* in neither: the default */
        {"127.0.0.1", "", "", 1, 38.9, -77.0, MRD_GEO_DEFAULT},
    };

    require_file(CITY_DB);
    assert_true(se->has_location && us->has_location && us->country[0] && gb2->has_location);
    assert_null(place_of("1.1.1.1"));
    assert_null(place_of("127.0.0.1"));
    set_net(&nets[0], "81.2.69.0/24", "FR", "EU", 1, 48.85, 2.35);
    set_net(&nets[1], "89.160.20.0/24", "NO", "EU", 0, 0, 0);
    set_net(&nets[2], "216.160.83.0/24", "", "", 1, 47.0, -122.0);
    set_net(&nets[3], "1.1.1.0/24", "AU", "OC", 0, 0, 0);
    conf.has_default_location = 1;
    conf.default_latitude = 38.9;
    conf.default_longitude = -77.0;
    g = geo_or_fail(&conf);
    check_table(g, w, sizeof(w) / sizeof(w[0]));
    mrd_geo_free(g);
}

/* ---- the test database against its table ---- */

/* Every row of the table, at the first and last address of its network (and,
 * for IPv4, both again IPv4-mapped), answers what the row says; without a
 * default, rows without coordinates keep their identity and stay unknown;
 * with one, they take it. */
static void
check_every_place(const struct mrd_geo *g, int has_default, double dlat, double dlon)
{
    load_places();
    for (size_t i = 0; i < n_places; i++) {
        for (int k = 0; k < 4; k++) {
            char ip[64];
            struct want w;

            if ((k & 2) && places[i].cidr.ip.family != AF_INET)
                break;
            place_addr(&places[i], k & 1, k & 2, ip, sizeof(ip));
            w = want_of_place(ip, &places[i], has_default, dlat, dlon);
            check_locate(g, &w);
        }
    }
}

static const char *const misses[] = {"1.1.1.1", "8.8.8.8", "127.0.0.1", "::1", "2001:db8::1", "::ffff:127.0.0.1"};

static void
test_mmdb_every_place(void **state)
{
    struct mrd_geo_conf conf = {.database = CITY_DB};
    struct mrd_geo *g;

    require_file(CITY_DB);
    g = geo_or_fail(&conf);
    check_every_place(g, 0, 0, 0);
    for (size_t i = 0; i < sizeof(misses) / sizeof(misses[0]); i++) {
        struct want w = {misses[i], "", "", 0, 0, 0, MRD_GEO_UNKNOWN};
        assert_null(place_of(misses[i]));
        check_locate(g, &w);
    }
    mrd_geo_free(g);

    conf.has_default_location = 1;
    conf.default_latitude = -1.5;
    conf.default_longitude = 36.8;
    g = geo_or_fail(&conf);
    check_every_place(g, 1, -1.5, 36.8);
    for (size_t i = 0; i < sizeof(misses) / sizeof(misses[0]); i++) {
        struct want w = {misses[i], "", "", 1, -1.5, 36.8, MRD_GEO_DEFAULT};
        check_locate(g, &w);
    }
    mrd_geo_free(g);
}

/* The addresses the other tests, the README and the demo rely on are in the
 * table with the identity they are used for, and the table has the kinds of
 * record the lookups must cope with. */
static void
test_places_cover_what_is_used(void **state)
{
    static const struct {
        const char *ip, *country, *continent;
        int has_location;
    } used[] = {
        {"81.2.69.142", "GB", "EU", 1},   {"2.125.160.216", "GB", "EU", 1}, {"89.160.20.112", "SE", "EU", 1},
        {"89.160.20.128", "SE", "EU", 1}, {"216.160.83.56", "US", "NA", 1}, {"216.160.83.58", "US", "NA", 1},
        {"214.78.120.1", "US", "NA", 1},  {"175.16.199.5", "CN", "AS", 1},  {"202.196.224.1", "PH", "AS", 1},
        {"202.12.27.33", "JP", "AS", 1},  {"200.160.0.8", "BR", "SA", 1},   {"2001:218::1", "JP", "AS", 1},
        {"2001:2e0::1", "HK", "AS", 1},   {"2a02:cf40::1", "NO", "EU", 1},  {"2.3.3.1", "", "EU", 0},
        {"2a02:d500::1", "", "EU", 1},
    };
    int registered_only = 0, identity_only = 0;

    for (size_t i = 0; i < sizeof(used) / sizeof(used[0]); i++) {
        const struct place *pl = place_or_fail(used[i].ip);
        CHECK(strcmp(pl->country, used[i].country) == 0, used[i].ip);
        CHECK(strcmp(pl->continent, used[i].continent) == 0, used[i].ip);
        CHECK(pl->has_location == used[i].has_location, used[i].ip);
    }
    for (size_t i = 0; i < n_places; i++) {
        if (!places[i].has_location && !places[i].country[0] && !places[i].continent[0] && places[i].registered[0])
            registered_only++;
        if (!places[i].has_location && places[i].country[0])
            identity_only++;
    }
    assert_true(registered_only > 0); /* a client known only by its registered_country */
    assert_true(identity_only > 0);   /* a country without coordinates */
}

/* The cache answers exactly what mrd_geo_locate answers, hits on repeats,
 * keeps IPv4 and IPv6 apart, and forgets everything on reset. */
static void
test_locate_cache(void **state)
{
    struct mrd_geo_conf conf = {.database = CITY_DB};
    static const char *const ips[] = {"81.2.69.142", "175.16.199.5", "2001:218::1", "1.1.1.1",
                                      "::ffff:89.160.20.128", "89.160.20.128"};
    struct mrd_geo_cache *c = calloc(1, sizeof(*c));
    struct mrd_geo *g;

    require_file(CITY_DB);
    g = geo_or_fail(&conf);
    for (int round = 0; round < 3; round++) {
        for (size_t i = 0; i < sizeof(ips) / sizeof(ips[0]); i++) {
            struct mrd_ip ip;
            struct mrd_location a, b;
            assert_int_equal(mrd_ip_parse(ips[i], strlen(ips[i]), &ip), 0);
            mrd_geo_locate(g, &ip, &a);
            mrd_geo_locate_cached(g, c, &ip, &b);
            assert_int_equal(a.known, b.known);
            assert_int_equal(a.source, b.source);
            assert_string_equal(a.country, b.country);
            assert_string_equal(a.continent, b.continent);
            assert_true(a.latitude == b.latitude && a.longitude == b.longitude);
        }
    }
    /* 6 addresses, two of them the same after v4-mapped folding: 5 misses */
    assert_int_equal(c->misses, 5);
    assert_int_equal(c->hits, 13);
    mrd_geo_cache_reset(c);
    assert_int_equal(c->hits + c->misses, 0);
    for (size_t i = 0; i < MRD_GEO_CACHE_SLOTS; i++)
        assert_int_equal(c->slots[i].used, 0);
    mrd_geo_free(g);
    free(c);
}

static void
test_mmdb_open_errors(void **state)
{
    struct mrd_geo_network_conf net;
    struct mrd_geo_conf conf = {.networks = &net, .n_networks = 1};
    const char *err = NULL;

    set_net(&net, "10.0.0.0/8", "DE", "EU", 1, 50, 8);
    conf.database = "build/geo/no-such-file.mmdb";
    assert_null(mrd_geo_new(&conf, &err));
    assert_non_null(err);
    if (strstr(err, "build/geo/no-such-file.mmdb") == NULL || strstr(err, "No such file") == NULL)
        fail_msg("error should name the path and the reason: %s", err);

    /* a file that exists but is not a MaxMind DB: the table itself */
    require_file(PLACES);
    conf.database = PLACES;
    err = NULL;
    assert_null(mrd_geo_new(&conf, &err));
    assert_non_null(err);
    if (strstr(err, PLACES) == NULL)
        fail_msg("error should name the path: %s", err);
}

/* ---- country centroids ---- */

static void
test_country_centroids(void **state)
{
    size_t n;
    const struct mrd_country_centroid *t = mrd_country_centroids(&n), *c;

    assert_int_equal(n, 250); /* 249 ISO 3166-1 codes + XK */
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(strlen(t[i].code), 2);
        assert_true(t[i].code[0] >= 'A' && t[i].code[0] <= 'Z' && t[i].code[1] >= 'A' && t[i].code[1] <= 'Z');
        assert_true(t[i].latitude >= -90 && t[i].latitude <= 90);
        assert_true(t[i].longitude >= -180 && t[i].longitude <= 180);
        if (i > 0 && strcmp(t[i - 1].code, t[i].code) >= 0)
            fail_msg("table not sorted at %s", t[i].code);
        assert_true(mrd_country_centroid(t[i].code) == &t[i]);
    }
    c = mrd_country_centroid("au");
    assert_non_null(c);
    assert_true(fabs(c->latitude + 25.27) < 1e-9 && fabs(c->longitude - 133.78) < 1e-9);
    /* plausibility: a few centroids fall inside their country's rough box */
    c = mrd_country_centroid("DE");
    assert_true(c->latitude > 47 && c->latitude < 55 && c->longitude > 6 && c->longitude < 15);
    c = mrd_country_centroid("US");
    assert_true(c->latitude > 25 && c->latitude < 49 && c->longitude > -125 && c->longitude < -67);
    c = mrd_country_centroid("BR");
    assert_true(c->latitude > -34 && c->latitude < 5 && c->longitude > -74 && c->longitude < -35);
    assert_null(mrd_country_centroid("ZZ"));
    assert_null(mrd_country_centroid(""));
    assert_null(mrd_country_centroid("A"));
    assert_null(mrd_country_centroid("AUS"));
    assert_null(mrd_country_centroid(NULL));
}

/* ---- replacing the database file (SPEC 11) ---- */

static void
copy_file(const char *from, const char *to)
{
    char buf[65536];
    size_t n;
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");

    if (in == NULL || out == NULL)
        fail_msg("cannot copy %s to %s", from, to);
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
        if (fwrite(buf, 1, n, out) != n)
            fail_msg("short write to %s", to);
    fclose(in);
    if (fclose(out) != 0)
        fail_msg("cannot write %s", to);
}

static void
locate_s(const struct mrd_geo *g, const char *s, struct mrd_location *loc)
{
    struct mrd_ip ip = ip_of(s);

    mrd_geo_locate(g, &ip, loc);
}

static void
test_db_replace(void **state)
{
    char dir[] = "/tmp/test_geo_XXXXXX", path[256], next[256], msg[512];
    struct mrd_geo_conf conf = {0};
    struct mrd_geo_db_info info;
    struct mrd_location loc;
    struct mrd_geo *g;
    uint64_t e1, e2;
    FILE *f;

    require_file(CITY_DB);
    require_file(COUNTRY_DB);
    if (mkdtemp(dir) == NULL)
        fail_msg("mkdtemp failed");
    snprintf(path, sizeof(path), "%s/geo.mmdb", dir);
    snprintf(next, sizeof(next), "%s/geo.mmdb.new", dir);
    copy_file(CITY_DB, path);
    conf.database = path;
    g = geo_or_fail(&conf);
    e1 = mrd_geo_epoch(g);
    assert_true(e1 > 0);
    mrd_geo_db_info(g, &info);
    assert_int_equal(info.open, 1);
    assert_string_equal(info.path, path);
    assert_string_equal(info.type, "GeoIP2-City");
    assert_true(info.build_epoch > 0);
    assert_int_equal(mrd_geo_db_check(g, msg, sizeof(msg)), MRD_GEO_CHECK_SAME);
    locate_s(g, "81.2.69.142", &loc);
    assert_int_equal(loc.source, MRD_GEO_DATABASE);

    /* a new file renamed over it: the next check swaps, the epoch moves */
    copy_file(COUNTRY_DB, next);
    assert_int_equal(rename(next, path), 0);
    assert_int_equal(mrd_geo_db_check(g, msg, sizeof(msg)), MRD_GEO_CHECK_RELOADED);
    assert_non_null(strstr(msg, "GeoIP2-Country"));
    e2 = mrd_geo_epoch(g);
    assert_true(e2 > e1);
    locate_s(g, "81.2.69.142", &loc);
    assert_int_equal(loc.source, MRD_GEO_COUNTRY);
    assert_string_equal(loc.country, "GB");
    assert_int_equal(mrd_geo_db_check(g, msg, sizeof(msg)), MRD_GEO_CHECK_SAME);

    /* garbage renamed over it: reported once, the last good one serves */
    f = fopen(next, "wb");
    assert_non_null(f);
    fputs("this is not a MaxMind database\n", f);
    fclose(f);
    assert_int_equal(rename(next, path), 0);
    assert_int_equal(mrd_geo_db_check(g, msg, sizeof(msg)), MRD_GEO_CHECK_FAILED);
    assert_non_null(strstr(msg, path));
    assert_int_equal(mrd_geo_db_check(g, msg, sizeof(msg)), MRD_GEO_CHECK_SAME);
    assert_true(mrd_geo_epoch(g) == e2);
    locate_s(g, "81.2.69.142", &loc);
    assert_int_equal(loc.source, MRD_GEO_COUNTRY);

    /* removed: reported once, still serving */
    assert_int_equal(unlink(path), 0);
    assert_int_equal(mrd_geo_db_check(g, msg, sizeof(msg)), MRD_GEO_CHECK_MISSING);
    assert_non_null(strstr(msg, "No such file"));
    assert_int_equal(mrd_geo_db_check(g, msg, sizeof(msg)), MRD_GEO_CHECK_SAME);
    locate_s(g, "81.2.69.142", &loc);
    assert_int_equal(loc.source, MRD_GEO_COUNTRY);

    /* a good file again */
    copy_file(CITY_DB, next);
    assert_int_equal(rename(next, path), 0);
    assert_int_equal(mrd_geo_db_check(g, msg, sizeof(msg)), MRD_GEO_CHECK_RELOADED);
    assert_true(mrd_geo_epoch(g) > e2);
    locate_s(g, "81.2.69.142", &loc);
    assert_int_equal(loc.source, MRD_GEO_DATABASE);
    assert_true(fabs(loc.latitude - 51.5142) < 1e-6);

    /* no database: nothing to check */
    mrd_geo_free(g);
    unlink(path);
    rmdir(dir);
    conf.database = NULL;
    g = geo_or_fail(&conf);
    assert_int_equal(mrd_geo_db_check(g, msg, sizeof(msg)), MRD_GEO_CHECK_NONE);
    assert_true(mrd_geo_epoch(g) == 0);
    mrd_geo_db_info(g, &info);
    assert_int_equal(info.open, 0);
    mrd_geo_free(g);
}

/* lookups on other threads while the database is swapped under them (run
 * under ASan, a use of a closed mapping would be caught) */
struct hammer {
    const struct mrd_geo *g;
    atomic_int stop;
    unsigned long lookups, bad;
};

static void *
hammer_run(void *arg)
{
    struct hammer *h = arg;
    struct mrd_ip ip = ip_of("81.2.69.142");
    struct mrd_location loc;

    while (!atomic_load(&h->stop)) {
        mrd_geo_locate(h->g, &ip, &loc);
        h->lookups++;
        /* either version answers GB: the city record or the country centroid */
        if (strcmp(loc.country, "GB") != 0 || !loc.known)
            h->bad++;
    }
    return NULL;
}

static void
test_db_replace_concurrent(void **state)
{
    char dir[] = "/tmp/test_geo_XXXXXX", path[256], next[256], msg[512];
    struct mrd_geo_conf conf = {0};
    struct hammer h[2];
    pthread_t th[2];
    struct mrd_geo *g;

    require_file(CITY_DB);
    require_file(COUNTRY_DB);
    if (mkdtemp(dir) == NULL)
        fail_msg("mkdtemp failed");
    snprintf(path, sizeof(path), "%s/geo.mmdb", dir);
    snprintf(next, sizeof(next), "%s/geo.mmdb.new", dir);
    copy_file(CITY_DB, path);
    conf.database = path;
    g = geo_or_fail(&conf);
    for (int i = 0; i < 2; i++) {
        memset(&h[i], 0, sizeof(h[i]));
        h[i].g = g;
        atomic_init(&h[i].stop, 0);
        assert_int_equal(pthread_create(&th[i], NULL, hammer_run, &h[i]), 0);
    }
    for (int round = 0; round < 40; round++) {
        copy_file(round % 2 ? CITY_DB : COUNTRY_DB, next);
        assert_int_equal(rename(next, path), 0);
        assert_int_equal(mrd_geo_db_check(g, msg, sizeof(msg)), MRD_GEO_CHECK_RELOADED);
        usleep(2000);
    }
    for (int i = 0; i < 2; i++) {
        atomic_store(&h[i].stop, 1);
        pthread_join(th[i], NULL);
        assert_true(h[i].lookups > 0);
        assert_int_equal(h[i].bad, 0);
    }
    mrd_geo_free(g);
    unlink(path);
    rmdir(dir);
}

/* ---- a large table against a linear scan ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t
rng(void)
{
    /* xorshift64*: deterministic, good enough to spread prefixes */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545f4914f6cdd1dull) >> 32);
}

static void
random_cidr(struct mrd_cidr *c, int v6)
{
    unsigned max = v6 ? 128 : 32, nbytes = v6 ? 16 : 4;

    memset(c, 0, sizeof(*c));
    c->ip.family = v6 ? AF_INET6 : AF_INET;
    /* few top bits vary, so many prefixes nest inside each other */
    c->ip.bytes[0] = (uint8_t)(v6 ? 0x20 : 10);
    c->ip.bytes[1] = (uint8_t)(rng() & 3);
    for (unsigned i = 2; i < nbytes; i++)
        c->ip.bytes[i] = (uint8_t)(rng() & (i < 4 ? 7 : 1));
    c->prefix = 8 + rng() % (max - 7);
    for (unsigned bit = c->prefix; bit < max; bit++)
        c->ip.bytes[bit / 8] &= (uint8_t)~(0x80u >> (bit % 8));
}

static void
test_lpm_matches_linear_scan(void **state)
{
    enum { N = 1000, LOOKUPS = 50000 };
    static struct mrd_geo_network_conf nets[N];
    struct mrd_geo_conf conf = {.networks = nets, .n_networks = N};
    struct mrd_geo *g;
    unsigned hits = 0;

    for (size_t i = 0; i < N; i++) {
        memset(&nets[i], 0, sizeof(nets[i]));
        random_cidr(&nets[i].cidr, i % 3 == 0);
        nets[i].has_location = 1;
        nets[i].latitude = -80 + (double)i * 0.1; /* identifies the entry */
        nets[i].longitude = (double)i * 0.1;
    }
    g = geo_or_fail(&conf);
    for (unsigned k = 0; k < LOOKUPS; k++) {
        struct mrd_ip ip;
        struct mrd_location loc;
        long best = -1;
        unsigned nbytes;

        /* half the lookups start from a network's address, half are random */
        if (k % 2 == 0) {
            ip = nets[rng() % N].cidr.ip;
            nbytes = ip.family == AF_INET ? 4 : 16;
            ip.bytes[nbytes - 1 - rng() % 2] ^= (uint8_t)rng();
        } else {
            struct mrd_cidr c;
            random_cidr(&c, k % 4 == 1);
            ip = c.ip;
            nbytes = ip.family == AF_INET ? 4 : 16;
            ip.bytes[nbytes - 1] = (uint8_t)rng();
        }
        for (size_t i = 0; i < N; i++)
            if (mrd_cidr_match(&nets[i].cidr, &ip) && (best < 0 || nets[i].cidr.prefix > nets[best].cidr.prefix))
                best = (long)i;
        mrd_geo_locate(g, &ip, &loc);
        if (best < 0) {
            if (loc.known)
                fail_msg("lookup %u: trie matched, linear scan did not", k);
            continue;
        }
        hits++;
        if (!loc.known || loc.latitude != nets[best].latitude || loc.longitude != nets[best].longitude)
            fail_msg("lookup %u: trie gave (%g, %g), linear scan entry %ld", k, loc.latitude, loc.longitude, best);
    }
    /* the generator must exercise matches, not just misses */
    assert_true(hits > LOOKUPS / 4);
    mrd_geo_free(g);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_haversine),
        cmocka_unit_test(test_geo_factor),
        cmocka_unit_test(test_source_names),
        cmocka_unit_test(test_lpm_nested_v4),
        cmocka_unit_test(test_lpm_v6_and_mapped),
        cmocka_unit_test(test_lpm_default_routes_and_duplicates),
        cmocka_unit_test(test_chain_without_database),
        cmocka_unit_test(test_chain_with_database),
        cmocka_unit_test(test_mmdb_every_place),
        cmocka_unit_test(test_places_cover_what_is_used),
        cmocka_unit_test(test_locate_cache),
        cmocka_unit_test(test_mmdb_open_errors),
        cmocka_unit_test(test_country_centroids),
        cmocka_unit_test(test_db_replace),
        cmocka_unit_test(test_db_replace_concurrent),
        cmocka_unit_test(test_lpm_matches_linear_scan),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
