/*
 * test_config.c: the YAML configuration loader. A table of invalid inputs,
 * each asserting the exact "t.yaml:LINE:COL:" and the gist of its single
 * message; then defaults, normalisation, derived values, several errors
 * reported at once, duration and rate parsing, and conf/example.yaml.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "meridian/config.h"

/* 6 lines each. After BASE, "    key: v" on line 7 extends regions[0] and an
 * unindented key is top level; after BASE_L, "    key: v" extends listeners[0]. */
#define LISTEN "listeners:\n  - address: \"127.0.0.1:8080\"\n"
#define REGION                                                                                                 \
    "regions:\n  - name: a\n    location: {latitude: 1, longitude: 2}\n"                                       \
    "    upstreams: [{address: \"10.0.0.1:80\"}]\n"
#define BASE LISTEN REGION
#define BASE_L REGION LISTEN
/* LISTEN and the first two lines of a region (lines 1-4); add location/upstreams */
#define REGION_HEAD LISTEN "regions:\n  - name: a\n"
#define LOC "    location: {latitude: 1, longitude: 2}\n"
#define UPS "    upstreams: [{address: \"10.0.0.1:80\"}]\n"
/* BASE and a minimal cluster block (lines 7-8); "  key: v" on line 9 extends it */
#define CLU BASE "cluster:\n  redis: {address: \"127.0.0.1:6379\"}\n"
/* BASE and "cluster:\n  redis: {address: A}" with A at line 8, column 20 */
#define REDIS_ADDR(a) BASE "cluster:\n  redis: {address: " a "}\n"

static void
dump(const struct mrd_diag *d)
{
    for (size_t i = 0; i < d->n; i++)
        print_message("  diag: %s\n", d->msgs[i]);
}

static struct mrd_config *
parse_ok(const char *yaml)
{
    struct mrd_diag d;
    struct mrd_config *c = NULL;
    int rc;

    mrd_diag_init(&d);
    rc = mrd_config_parse(yaml, strlen(yaml), "t.yaml", &c, &d);
    if (rc != 0 || d.n != 0) {
        dump(&d);
        mrd_diag_dispose(&d);
        mrd_config_free(c);
        fail_msg("expected a valid configuration");
    }
    mrd_diag_dispose(&d);
    assert_non_null(c);
    return c;
}

/* ---- invalid configurations: exactly one diagnostic each ---- */

struct bad_case {
    const char *name;
    const char *yaml;
    const char *pos; /* "t.yaml:L:C:" */
    const char *msg; /* substring of the message */
};

static const struct bad_case bad_cases[] = {
    /* document level */
    {"empty file", "", "t.yaml:1:1:", "empty configuration"},
    {"only a comment", "# nothing\n", "t.yaml:1:1:", "empty configuration"},
    {"only ---", "---\n", "t.yaml:1:1:", "empty configuration"},
    {"root is a list", "- a\n", "t.yaml:1:1:", "must be a mapping"},
    {"syntax error", "a: b: c\n", "t.yaml:1:5:", "YAML syntax error: mapping values are not allowed"},
    {"unclosed quote", BASE "user: \"x\n", "t.yaml:8:1:", "YAML syntax error"},
    {"tab indentation", "listeners:\n\t- x\n", "t.yaml:2:1:", "tabs are not allowed"},
    {"alias", BASE "user: &u x\nextra: *u\n", "t.yaml:8:8:", "aliases (*u) are not supported"},
    {"two documents", BASE "---\nworkers: 1\n", "t.yaml:7:1:", "only one YAML document"},
    {"NUL in a value", BASE "user: \"a\\0b\"\n", "t.yaml:7:7:", "user: must not contain NUL"},
    /* bad UTF-8: lines and columns counted as libyaml's marks count them */
    {"bad UTF-8 after LF", "workers: 1\nx: \xff\n", "t.yaml:2:4:", "invalid leading UTF-8 octet"},
    {"bad UTF-8 after CR LF", "workers: 1\r\nx: \xff\n", "t.yaml:2:4:", "invalid leading UTF-8 octet"},
    {"bad UTF-8 after a lone CR", "workers: 1\rx: \xff\n", "t.yaml:2:4:", "invalid leading UTF-8 octet"},
    {"bad UTF-8 after NEL", "workers: 1\xc2\x85x: \xff\n", "t.yaml:2:4:", "invalid leading UTF-8 octet"},
    {"bad UTF-8 after LS", "workers: 1\xe2\x80\xa8x: \xff\n", "t.yaml:2:4:", "invalid leading UTF-8 octet"},
    {"bad UTF-8 after a BOM", "\xef\xbb\xbfx: \xff\n", "t.yaml:1:4:", "invalid leading UTF-8 octet"},
    /* libyaml puts an error at the end of a file without a final newline on
     * the next line; it is shown at the end of the last line */
    {"unclosed flow map at EOF", BASE "user: {a: b", "t.yaml:7:12:", "did not find expected ',' or '}'"},
    {"unclosed flow seq at EOF", "workers: [1", "t.yaml:1:12:", "YAML syntax error"},
    {"bad UTF-8 after e-acute", "x: \xc3\xa9\xff\n", "t.yaml:1:5:", "invalid leading UTF-8 octet"},
    {"invalid UTF-8", BASE "user: \xff\n", "t.yaml:7:7:", "invalid leading UTF-8 octet"},
    {"key is a sequence", BASE "[a]: 1\n", "t.yaml:7:1:", "keys must be plain names"},
    {"duplicate top-level key", BASE "workers: 2\nworkers: 3\n", "t.yaml:8:1:", "duplicate key \"workers\" (first at line 7)"},
    {"unknown top-level key", BASE "foo: 1\n", "t.yaml:7:1:", "unknown key \"foo\" at the top level"},
    {"misspelt top-level key", BASE "timeout: {}\n", "t.yaml:7:1:", "did you mean \"timeouts\"?"},
    {"missing listeners", REGION, "t.yaml:1:1:", "missing required top-level key \"listeners\""},
    {"missing regions", LISTEN, "t.yaml:1:1:", "missing required top-level key \"regions\""},
    {"missing listeners after comments", "# c\n\n" REGION, "t.yaml:1:1:", "missing required top-level key \"listeners\""},
    {"tab after UTF-8", "user: \"\xc3\xa9\xc3\xa9\"\nlisteners:\n\t- x\n", "t.yaml:3:1:", "tabs are not allowed"},
    {"empty listeners", REGION "listeners: []\n", "t.yaml:5:12:", "listeners: must have at least one entry"},
    {"listeners not a list", REGION "listeners:\n", "t.yaml:5:11:", "expected a sequence, got an empty value"},
    {"section not a map", BASE "timeouts: 5s\n", "t.yaml:7:11:", "timeouts: expected a mapping, got \"5s\""},

    /* workers, user */
    {"workers 0", BASE "workers: 0\n", "t.yaml:7:10:", "workers: must be an integer from 1 to 1024"},
    {"workers 1025", BASE "workers: 1025\n", "t.yaml:7:10:", "from 1 to 1024"},
    {"workers word", BASE "workers: many\n", "t.yaml:7:10:", "expected \"auto\" or an integer"},
    {"workers fraction", BASE "workers: 2.5\n", "t.yaml:7:10:", "expected \"auto\" or an integer"},
    {"user a map", BASE "user: {a: 1}\n", "t.yaml:7:7:", "user: expected a single value, got a mapping"},
    {"user empty", BASE "user: ''\n", "t.yaml:7:7:", "user: must not be empty"},

    /* listeners */
    {"h2 without tls", BASE_L "    protocols: [h2]\n", "t.yaml:7:17:", "listeners[0].protocols[0]: h2 needs a tls block"},
    {"h2c with tls", BASE_L "    tls: {certificates: [{cert: c, key: k}]}\n    protocols: [h2c]\n", "t.yaml:8:17:",
     "h2c is plaintext"},
    {"duplicate protocol", BASE_L "    protocols: [http1, http1]\n", "t.yaml:7:24:", "\"http1\" is listed twice"},
    {"unknown protocol", BASE_L "    protocols: [spdy]\n", "t.yaml:7:17:", "expected one of http1, h2c, h2, got \"spdy\""},
    {"no protocols", BASE_L "    protocols: []\n", "t.yaml:7:16:", "at least one protocol"},
    {"protocols scalar", BASE_L "    protocols: http1\n", "t.yaml:7:16:", "expected a sequence"},
    {"no certificates", BASE_L "    tls: {certificates: []}\n", "t.yaml:7:25:",
     "listeners[0].tls.certificates: must have at least one entry"},
    {"certificate without key", BASE_L "    tls: {certificates: [{cert: c}]}\n", "t.yaml:7:26:",
     "listeners[0].tls.certificates[0]: missing required key \"key\""},
    {"tls min_version", BASE_L "    tls: {certificates: [{cert: c, key: k}], min_version: \"1.1\"}\n", "t.yaml:7:59:",
     "expected \"1.2\" or \"1.3\""},
    {"empty tls", BASE_L "    tls: {}\n", "t.yaml:7:10:", "missing required key \"certificates\""},
    {"unknown listener key", BASE_L "    bogus: 1\n", "t.yaml:7:5:", "unknown key \"bogus\" in listeners[0]"},
    {"proxy_protocol yes", BASE_L "    proxy_protocol: yes\n", "t.yaml:7:21:",
     "listeners[0].proxy_protocol: expected true or false, got \"yes\""},
    {"proxy_protocol v2", BASE_L "    proxy_protocol: v2\n", "t.yaml:7:21:", "expected true or false"},
    {"proxy_protocol without trusted proxies", BASE_L "    proxy_protocol: true\n", "t.yaml:7:21:",
     "listeners[0].proxy_protocol: needs client_ip.trusted_proxies"},
    {"proxy_protocol with an empty trusted list", BASE_L "    proxy_protocol: true\nclient_ip: {trusted_proxies: []}\n",
     "t.yaml:7:21:", "listeners[0].proxy_protocol: needs client_ip.trusted_proxies"},
    {"duplicate listener", BASE_L "  - address: \"127.0.0.1:8080\"\n", "t.yaml:7:14:",
     "listeners[1].address: \"127.0.0.1:8080\" is already used by listeners[0]"},
    {"listener host name", BASE_L "  - address: \"localhost:80\"\n", "t.yaml:7:14:", "invalid address \"localhost:80\""},
    {"listener port 0", BASE_L "  - address: \"[::1]:0\"\n", "t.yaml:7:14:", "1 to 65535"},
    {"listener v6 without brackets", BASE_L "  - address: \"::1:80\"\n", "t.yaml:7:14:", "brackets"},
    {"listener without address", BASE_L "  - protocols: [http1]\n", "t.yaml:7:5:",
     "listeners[1]: missing required key \"address\""},

    /* admin */
    {"admin without address", BASE "admin: {token: x}\n", "t.yaml:7:8:", "admin: missing required key \"address\""},
    {"admin on a listener address", BASE "admin: {address: \"127.0.0.1:8080\"}\n", "t.yaml:2:14:",
     "is also the admin address"},
    {"admin token with space", BASE "admin: {address: \"127.0.0.1:9901\", token: \"a b\"}\n", "t.yaml:7:43:",
     "admin.token: must be printable ASCII"},
    {"admin address without port", BASE "admin: {address: 127.0.0.1}\n", "t.yaml:7:18:", "admin.address: invalid"},

    /* timeouts */
    {"timeout 0", BASE "timeouts:\n  connect: 0s\n", "t.yaml:8:12:", "timeouts.connect: must be greater than 0"},
    {"timeout without unit", BASE "timeouts:\n  idle: 5\n", "t.yaml:8:9:", "timeouts.idle: expected a duration"},
    {"timeout fraction", BASE "timeouts:\n  shutdown: 1.5s\n", "t.yaml:8:13:", "expected a duration"},
    {"timeout unknown unit", BASE "timeouts:\n  request_header: 2d\n", "t.yaml:8:19:", "expected a duration"},
    {"timeout negative", BASE "timeouts:\n  upstream_response: -1s\n", "t.yaml:8:22:", "expected a duration"},
    {"timeout with space", BASE "timeouts:\n  connect: 2 s\n", "t.yaml:8:12:", "expected a duration"},
    {"timeout too long", BASE "timeouts:\n  connect: 9000h\n", "t.yaml:8:12:", "at most 8760h"},
    {"request_body 0", BASE "timeouts:\n  request_body: 0ms\n", "t.yaml:8:17:",
     "timeouts.request_body: must be greater than 0"},
    {"request_body bare", BASE "timeouts:\n  request_body: 30\n", "t.yaml:8:17:", "expected a duration"},
    {"request_body not a scalar", BASE "timeouts:\n  request_body: [1s]\n", "t.yaml:8:17:",
     "timeouts.request_body: expected a single value, got a sequence"},
    {"request_body misspelt", BASE "timeouts:\n  request_bdy: 1s\n", "t.yaml:8:3:",
     "unknown key \"request_bdy\" in timeouts (did you mean \"request_body\"?)"},
    {"timeout misspelt", BASE "timeouts:\n  connct: 2s\n", "t.yaml:8:3:",
     "unknown key \"connct\" in timeouts (did you mean \"connect\"?)"},

    /* limits */
    {"max_header_bytes low", BASE "limits:\n  max_header_bytes: 1023\n", "t.yaml:8:21:", "from 1024 to 1048576"},
    {"max_header_bytes high", BASE "limits:\n  max_header_bytes: 1048577\n", "t.yaml:8:21:", "from 1024 to 1048576"},
    {"max_body_bytes negative", BASE "limits:\n  max_body_bytes: -1\n", "t.yaml:8:19:", "must be an integer >= 0"},
    {"max_connections 0", BASE "limits:\n  max_connections: 0\n", "t.yaml:8:20:", "from 1 to 10000000"},
    {"max_connections high", BASE "limits:\n  max_connections: 10000001\n", "t.yaml:8:20:", "from 1 to 10000000"},
    {"integer overflow", BASE "limits:\n  max_connections: 99999999999999999999\n", "t.yaml:8:20:", "from 1 to 10000000"},
    {"integer exponent", BASE "limits:\n  max_connections: 1e3\n", "t.yaml:8:20:", "expected an integer"},
    {"integer fraction", BASE "limits:\n  max_connections: 1.5\n", "t.yaml:8:20:", "expected an integer"},

    /* geo */
    {"network host bits", BASE "geo:\n  networks:\n    - cidr: 10.1.2.3/16\n", "t.yaml:9:13:",
     "geo.networks[0].cidr: invalid CIDR \"10.1.2.3/16\": host bits"},
    {"network without cidr", BASE "geo:\n  networks:\n    - country: DE\n", "t.yaml:9:7:",
     "geo.networks[0]: missing required key \"cidr\""},
    {"country three letters", BASE "geo:\n  networks:\n    - cidr: 10.0.0.0/8\n      country: DEU\n", "t.yaml:10:16:",
     "two-letter ISO 3166 country code"},
    {"country digit", BASE "geo:\n  networks:\n    - cidr: 10.0.0.0/8\n      country: D1\n", "t.yaml:10:16:",
     "two-letter"},
    {"continent unknown", BASE "geo:\n  networks:\n    - cidr: 10.0.0.0/8\n      continent: XX\n", "t.yaml:10:18:",
     "unknown continent \"XX\""},
    {"latitude without longitude", BASE "geo:\n  networks:\n    - cidr: 10.0.0.0/8\n      latitude: 5\n", "t.yaml:9:7:",
     "latitude and longitude must be given together"},
    {"network latitude 90.5", BASE "geo:\n  networks:\n    - cidr: 10.0.0.0/8\n      latitude: 90.5\n      longitude: 0\n",
     "t.yaml:10:17:", "latitude: must be a number from -90 to 90"},
    {"network longitude -180.1", BASE "geo:\n  networks:\n    - cidr: 10.0.0.0/8\n      latitude: 0\n      longitude: -180.1\n",
     "t.yaml:11:18:", "from -180 to 180"},
    {"network unknown key", BASE "geo:\n  networks:\n    - cidr: 10.0.0.0/8\n      city: x\n", "t.yaml:10:7:",
     "unknown key \"city\" in geo.networks[0]"},
    {"default location half", BASE "geo:\n  default_location: {latitude: 1}\n", "t.yaml:8:21:",
     "geo.default_location: missing required key \"longitude\""},
    {"empty database", BASE "geo:\n  database: ''\n", "t.yaml:8:13:", "geo.database: must not be empty"},
    {"reload_check 0", BASE "geo:\n  reload_check: 0s\n", "t.yaml:8:17:", "geo.reload_check: must be greater than 0"},
    {"reload_check without unit", BASE "geo:\n  reload_check: 60\n", "t.yaml:8:17:",
     "geo.reload_check: expected a duration"},
    {"reload_check too long", BASE "geo:\n  reload_check: 8761h\n", "t.yaml:8:17:", "at most 8760h"},
    {"reload_check misspelt", BASE "geo:\n  reload_chek: 1s\n", "t.yaml:8:3:",
     "unknown key \"reload_chek\" in geo (did you mean \"reload_check\"?)"},

    /* client_ip */
    {"trusted proxy prefix", BASE "client_ip:\n  trusted_proxies: [10.0.0.0/8, 1.2.3.4/33]\n", "t.yaml:8:33:",
     "client_ip.trusted_proxies[1]: invalid CIDR \"1.2.3.4/33\""},
    {"trusted proxies scalar", BASE "client_ip:\n  trusted_proxies: 10.0.0.0/8\n", "t.yaml:8:20:", "expected a sequence"},
    {"header with space", BASE "client_ip:\n  header: \"X Forwarded\"\n", "t.yaml:8:11:", "not a valid HTTP header name"},
    {"header with colon", BASE "client_ip:\n  header: \"X-Client:\"\n", "t.yaml:8:11:", "not a valid HTTP header name"},

    /* scoring */
    {"negative weight", BASE "scoring:\n  weights: {geography: -1}\n", "t.yaml:8:24:",
     "scoring.weights.geography: must be a number >= 0"},
    {"weights sum 0", BASE "scoring:\n  weights: {geography: 0, cost: 0}\n", "t.yaml:8:12:", "must not all be 0"},
    {"weights empty map", BASE "scoring:\n  weights: {}\n", "t.yaml:8:12:", "must not all be 0"},
    {"weights unknown factor", BASE "scoring:\n  weights: {speed: 1}\n", "t.yaml:8:13:",
     "unknown key \"speed\" in scoring.weights"},
    {"weight not a number", BASE "scoring:\n  weights: {geography: x}\n", "t.yaml:8:24:", "expected a number"},
    {"weight infinite", BASE "scoring:\n  weights: {geography: 1e999}\n", "t.yaml:8:24:", "must be a number >= 0"},
    {"latency_ceiling 0", BASE "scoring:\n  latency_ceiling: 0ms\n", "t.yaml:8:20:", "must be greater than 0"},

    /* regions (BASE + "    key: value" extends regions[0]) */
    {"retries 11", BASE "    retries: 11\n", "t.yaml:7:14:", "regions[0].retries: must be an integer from 0 to 10"},
    {"retries -1", BASE "    retries: -1\n", "t.yaml:7:14:", "from 0 to 10"},
    {"cost 0", BASE "    cost: 0\n", "t.yaml:7:11:", "regions[0].cost: must be a number > 0"},
    {"cost negative", BASE "    cost: -1.5\n", "t.yaml:7:11:", "must be a number > 0"},
    {"cost text", BASE "    cost: cheap\n", "t.yaml:7:11:", "expected a number, got \"cheap\""},
    {"cost nan", BASE "    cost: nan\n", "t.yaml:7:11:", "expected a number"},
    {"cost hex", BASE "    cost: 0x10\n", "t.yaml:7:11:", "expected a number"},
    {"burst without rps", BASE "    capacity_burst: 5\n", "t.yaml:7:21:", "regions[0].capacity_burst: needs capacity_rps"},
    {"capacity_rps 0", BASE "    capacity_rps: 0\n", "t.yaml:7:19:", "must be an integer from 1"},
    {"capacity_burst 0", BASE "    capacity_rps: 10\n    capacity_burst: 0\n", "t.yaml:8:21:", "must be an integer from 1"},
    {"unknown balance", BASE "    balance: random\n", "t.yaml:7:14:",
     "expected one of least_connections, round_robin, p2c_ewma, got \"random\""},
    {"unknown upstream_protocol", BASE "    upstream_protocol: http2\n", "t.yaml:7:24:",
     "regions[0].upstream_protocol: expected one of http1, h2c, h2, got \"http2\""},
    {"upstream_protocol h2 without tls", BASE "    upstream_protocol: h2\n", "t.yaml:7:24:",
     "regions[0].upstream_protocol: h2 requires upstream_tls"},
    {"unknown fallback", BASE "    fallback: zz\n", "t.yaml:7:15:", "regions[0].fallback: unknown region \"zz\""},
    {"self fallback", BASE "    fallback: a\n", "t.yaml:7:15:", "fallback cycle: a -> a"},
    {"health path", BASE "    health_check: {path: healthz}\n", "t.yaml:7:26:",
     "regions[0].health_check.path: must start with \"/\""},
    {"health path space", BASE "    health_check: {path: \"/a b\"}\n", "t.yaml:7:26:", "spaces"},
    {"health interval 0", BASE "    health_check: {interval: 0s}\n", "t.yaml:7:30:", "must be greater than 0"},
    {"health timeout bare", BASE "    health_check: {timeout: 1}\n", "t.yaml:7:29:", "expected a duration"},
    {"health rise 0", BASE "    health_check: {rise: 0}\n", "t.yaml:7:26:", "health_check.rise: must be an integer from 1"},
    {"health fall 0", BASE "    health_check: {fall: 0}\n", "t.yaml:7:26:", "health_check.fall: must be an integer from 1"},
    {"expect_status 99", BASE "    health_check: {expect_status: 99}\n", "t.yaml:7:35:", "from 100 to 599"},
    {"expect_status 600", BASE "    health_check: {expect_status: 600}\n", "t.yaml:7:35:", "from 100 to 599"},
    {"unknown region key", BASE "    bogus: 1\n", "t.yaml:7:5:", "unknown key \"bogus\" in regions[0]"},
    {"duplicate region key", BASE "    location: {latitude: 0, longitude: 0}\n", "t.yaml:7:5:",
     "duplicate key \"location\" in regions[0] (first at line 5)"},
    {"region name chars", LISTEN "regions:\n  - name: \"a b\"\n" LOC UPS, "t.yaml:4:11:",
     "regions[0].name: \"a b\": region names are"},
    {"region name empty", LISTEN "regions:\n  - name: \"\"\n" LOC UPS, "t.yaml:4:11:", "must not be empty"},
    {"duplicate region name", BASE "  - name: a\n" LOC "    upstreams: [{address: \"10.0.0.2:80\"}]\n", "t.yaml:7:11:",
     "regions[1].name: duplicate region name \"a\" (first at line 4)"},
    {"region without location", REGION_HEAD UPS, "t.yaml:4:5:", "regions[0]: missing required key \"location\""},
    {"region without upstreams", REGION_HEAD LOC, "t.yaml:4:5:", "regions[0]: missing required key \"upstreams\""},
    {"region without name", LISTEN "regions:\n  - location: {latitude: 1, longitude: 2}\n" UPS, "t.yaml:4:5:",
     "missing required key \"name\""},
    {"empty upstreams", REGION_HEAD LOC "    upstreams: []\n", "t.yaml:6:16:",
     "regions[0].upstreams: must have at least one entry"},
    {"latitude 91", REGION_HEAD "    location: {latitude: 91, longitude: 2}\n" UPS, "t.yaml:5:26:",
     "regions[0].location.latitude: must be a number from -90 to 90"},
    {"latitude -90.01", REGION_HEAD "    location: {latitude: -90.01, longitude: 2}\n" UPS, "t.yaml:5:26:",
     "from -90 to 90"},
    {"longitude 181", REGION_HEAD "    location: {latitude: 1, longitude: 181}\n" UPS, "t.yaml:5:40:",
     "regions[0].location.longitude: must be a number from -180 to 180"},
    {"location half", REGION_HEAD "    location: {latitude: 1}\n" UPS, "t.yaml:5:15:",
     "regions[0].location: missing required key \"longitude\""},
    {"location scalar", REGION_HEAD "    location: here\n" UPS, "t.yaml:5:15:", "expected a mapping"},
    {"duplicate upstream", REGION_HEAD LOC "    upstreams:\n      - address: \"10.0.0.1:80\"\n      - address: \"10.0.0.1:80\"\n",
     "t.yaml:8:18:", "regions[0].upstreams[1].address: \"10.0.0.1:80\" is already upstreams[0]"},
    {"upstream weight 0", REGION_HEAD LOC "    upstreams: [{address: \"10.0.0.1:80\", weight: 0}]\n", "t.yaml:6:50:",
     "regions[0].upstreams[0].weight: must be an integer from 1 to 1000"},
    {"upstream weight 1001", REGION_HEAD LOC "    upstreams: [{address: \"10.0.0.1:80\", weight: 1001}]\n",
     "t.yaml:6:50:", "from 1 to 1000"},
    {"upstream without address", REGION_HEAD LOC "    upstreams: [{weight: 1}]\n", "t.yaml:6:17:",
     "regions[0].upstreams[0]: missing required key \"address\""},
    {"upstream bad host name", REGION_HEAD LOC "    upstreams: [{address: \"back_end:80\"}]\n", "t.yaml:6:27:",
     "invalid address \"back_end:80\": invalid character in host name"},
    {"send_proxy v3", REGION_HEAD LOC "    upstreams: [{address: \"10.0.0.1:80\", send_proxy: v3}]\n", "t.yaml:6:54:",
     "regions[0].upstreams[0].send_proxy: expected one of v1, v2, got \"v3\""},
    {"send_proxy true", REGION_HEAD LOC "    upstreams: [{address: \"10.0.0.1:80\", send_proxy: true}]\n",
     "t.yaml:6:54:", "expected one of v1, v2"},
    {"send_proxy list", REGION_HEAD LOC "    upstreams: [{address: \"10.0.0.1:80\", send_proxy: [v1]}]\n",
     "t.yaml:6:54:", "regions[0].upstreams[0].send_proxy: expected a single value, got a sequence"},

    /* policies */
    {"residency unknown region",
     BASE "policies:\n  residency:\n    - name: r\n      match: {continents: [EU]}\n      regions: [a, nope]\n",
     "t.yaml:11:20:", "policies.residency[0].regions[1]: unknown region \"nope\""},
    {"residency no regions",
     BASE "policies:\n  residency:\n    - name: r\n      match: {continents: [EU]}\n      regions: []\n", "t.yaml:11:16:",
     "must name at least one region"},
    {"residency without regions", BASE "policies:\n  residency:\n    - name: r\n      match: {countries: [DE]}\n",
     "t.yaml:9:7:", "policies.residency[0]: missing required key \"regions\""},
    {"residency empty match", BASE "policies:\n  residency:\n    - name: r\n      match: {}\n      regions: [a]\n",
     "t.yaml:10:14:", "policies.residency[0].match: needs a non-empty continents or countries list"},
    {"residency empty lists",
     BASE "policies:\n  residency:\n    - name: r\n      match: {continents: [], countries: []}\n      regions: [a]\n",
     "t.yaml:10:14:", "needs a non-empty"},
    {"residency bad continent",
     BASE "policies:\n  residency:\n    - name: r\n      match: {continents: [XX]}\n      regions: [a]\n",
     "t.yaml:10:28:", "policies.residency[0].match.continents[0]: unknown continent"},
    {"residency match unknown key",
     BASE "policies:\n  residency:\n    - name: r\n      match: {cities: [x]}\n      regions: [a]\n", "t.yaml:10:15:",
     "unknown key \"cities\" in policies.residency[0].match"},
    {"geo_block status 99", BASE "policies:\n  geo_block: {status: 99}\n", "t.yaml:8:23:",
     "policies.geo_block.status: must be an integer from 100 to 599"},
    {"geo_block bad country", BASE "policies:\n  geo_block: {countries: [K]}\n", "t.yaml:8:27:",
     "policies.geo_block.countries[0]: expected a two-letter"},
    {"rate per hour", BASE "policies:\n  client_rate_limit: {rate: 10/h}\n", "t.yaml:8:29:", "expected a rate"},
    {"rate 0", BASE "policies:\n  client_rate_limit: {rate: 0/s}\n", "t.yaml:8:29:", "expected a rate"},
    {"rate fraction", BASE "policies:\n  client_rate_limit: {rate: 1.5/s}\n", "t.yaml:8:29:", "expected a rate"},
    {"rate bare number", BASE "policies:\n  client_rate_limit: {rate: 100}\n", "t.yaml:8:29:", "expected a rate"},
    {"rate burst 0", BASE "policies:\n  client_rate_limit: {rate: 10/s, burst: 0}\n", "t.yaml:8:42:",
     "policies.client_rate_limit.burst: must be an integer from 1"},
    {"rate missing", BASE "policies:\n  client_rate_limit: {burst: 5}\n", "t.yaml:8:22:",
     "policies.client_rate_limit: missing required key \"rate\""},

    /* response_headers, access_log */
    {"bool yes", BASE "response_headers: {region: yes}\n", "t.yaml:7:28:",
     "response_headers.region: expected true or false, got \"yes\""},
    {"bool 1", BASE "response_headers: {region: 1}\n", "t.yaml:7:28:", "expected true or false"},
    {"log format", BASE "access_log: {format: xml}\n", "t.yaml:7:22:", "access_log.format: expected one of json, text"},
    {"log path empty", BASE "access_log: {path: ''}\n", "t.yaml:7:20:", "access_log.path: must not be empty"},
    {"error log level", BASE "error_log: {level: loud}\n", "t.yaml:7:20:",
     "error_log.level: expected one of error, warn, info, debug"},
    {"error log path empty", BASE "error_log: {path: ''}\n", "t.yaml:7:19:", "error_log.path: must not be empty"},
    {"error log unknown key", BASE "error_log: {file: x}\n", "t.yaml:7:13:", "unknown key \"file\" in error_log"},
    /* regions[].upstream_tls (files are loaded by the generation, see the integration tests) */
    {"upstream_tls not a mapping", BASE "    upstream_tls: yes\n", "t.yaml:7:19:",
     "regions[0].upstream_tls: expected a mapping"},
    {"upstream_tls min_version", BASE "    upstream_tls: {min_version: \"1.1\"}\n", "t.yaml:7:33:",
     "regions[0].upstream_tls.min_version: expected \"1.2\" or \"1.3\", got \"1.1\""},
    {"upstream_tls min_version number", BASE "    upstream_tls: {min_version: 1.0}\n", "t.yaml:7:33:",
     "expected \"1.2\" or \"1.3\", got \"1.0\""},
    {"upstream_tls verify", BASE "    upstream_tls: {verify: no}\n", "t.yaml:7:28:",
     "regions[0].upstream_tls.verify: expected true or false, got \"no\""},
    {"upstream_tls server_name", BASE "    upstream_tls: {server_name: -x.example}\n", "t.yaml:7:33:",
     "regions[0].upstream_tls.server_name: \"-x.example\" has a label starting with '-'"},
    {"upstream_tls certificate without cert", BASE "    upstream_tls: {certificate: {key: k.pem}}\n",
     "t.yaml:7:33:", "regions[0].upstream_tls.certificate: missing required key \"cert\""},
    {"upstream_tls ca empty", BASE "    upstream_tls: {ca: ''}\n", "t.yaml:7:24:",
     "regions[0].upstream_tls.ca: must not be empty"},
    {"upstream_tls unknown key", BASE "    upstream_tls: {sni: x}\n", "t.yaml:7:20:",
     "unknown key \"sni\" in regions[0].upstream_tls"},

    /* cluster (SPEC 8) */
    {"cluster empty", BASE "cluster:\n", "t.yaml:7:9:", "cluster: expected a mapping, got an empty value"},
    {"cluster scalar", BASE "cluster: redis\n", "t.yaml:7:10:", "cluster: expected a mapping, got \"redis\""},
    {"cluster without redis", BASE "cluster: {name: edge}\n", "t.yaml:7:10:",
     "cluster: missing required key \"redis\""},
    {"cluster empty map", BASE "cluster: {}\n", "t.yaml:7:10:", "cluster: missing required key \"redis\""},
    {"redis not a mapping", BASE "cluster: {redis: \"127.0.0.1:6379\"}\n", "t.yaml:7:18:",
     "cluster.redis: expected a mapping, got \"127.0.0.1:6379\""},
    {"redis without address", BASE "cluster:\n  redis: {database: 1}\n", "t.yaml:8:10:",
     "cluster.redis: missing required key \"address\""},
    {"redis address empty", REDIS_ADDR("''"), "t.yaml:8:20:", "cluster.redis.address: must not be empty"},
    {"redis address list", REDIS_ADDR("[a]"), "t.yaml:8:20:",
     "cluster.redis.address: expected a single value, got a sequence"},
    {"redis address without port", REDIS_ADDR("127.0.0.1"), "t.yaml:8:20:",
     "cluster.redis.address: invalid address \"127.0.0.1\": expected host:port, [IPv6]:port or unix:/absolute/path"},
    {"redis name without port", REDIS_ADDR("redis.internal"), "t.yaml:8:20:",
     "invalid address \"redis.internal\": expected host:port"},
    {"redis port 0", REDIS_ADDR("\"127.0.0.1:0\""), "t.yaml:8:20:",
     "invalid address \"127.0.0.1:0\": port must be a number from 1 to 65535"},
    {"redis name port 65536", REDIS_ADDR("\"redis:65536\""), "t.yaml:8:20:",
     "invalid address \"redis:65536\": port must be a number from 1 to 65535"},
    {"redis name port word", REDIS_ADDR("\"redis:http\""), "t.yaml:8:20:", "port must be a number from 1 to 65535"},
    {"redis v6 without brackets", REDIS_ADDR("\"::1:6379\""), "t.yaml:8:20:",
     "invalid address \"::1:6379\": IPv6 addresses must be in brackets"},
    {"redis v6 without port", REDIS_ADDR("\"[::1]\""), "t.yaml:8:20:", "expected ':port' after ']'"},
    {"redis v4 in brackets", REDIS_ADDR("\"[127.0.0.1]:6379\""), "t.yaml:8:20:",
     "brackets are only for IPv6 addresses"},
    {"redis bad v4", REDIS_ADDR("\"10.0.0.300:6379\""), "t.yaml:8:20:", "cannot end in a numeric label"},
    {"redis bad host name", REDIS_ADDR("\"redis_1:6379\""), "t.yaml:8:20:",
     "invalid address \"redis_1:6379\": invalid character in host name"},
    {"redis unix relative", REDIS_ADDR("\"unix:redis.sock\""), "t.yaml:8:20:",
     "invalid address \"unix:redis.sock\": a unix socket is unix:/absolute/path"},
    {"redis unix empty", REDIS_ADDR("\"unix:\""), "t.yaml:8:20:", "a unix socket is unix:/absolute/path"},
    {"redis unix too long",
     REDIS_ADDR("\"unix:/run/redis/0123456789012345678901234567890123456789012345678901234567890123456789"
                "0123456789012345678901234567890123456789.sock\""),
     "t.yaml:8:20:", "a unix socket path is at most 107 bytes"},
    {"redis database -1", BASE "cluster:\n  redis: {address: \"127.0.0.1:6379\", database: -1}\n", "t.yaml:8:48:",
     "cluster.redis.database: must be an integer from 0 to 2147483647, got \"-1\""},
    {"redis database 2^31", BASE "cluster:\n  redis: {address: \"127.0.0.1:6379\", database: 2147483648}\n",
     "t.yaml:8:48:", "must be an integer from 0 to 2147483647"},
    {"redis database word", BASE "cluster:\n  redis: {address: \"127.0.0.1:6379\", database: one}\n",
     "t.yaml:8:48:", "cluster.redis.database: expected an integer, got \"one\""},
    {"password file missing",
     BASE "cluster:\n  redis: {address: \"127.0.0.1:6379\", password_file: /nonexistent/redis.pass}\n",
     "t.yaml:8:53:",
     "cluster.redis.password_file: cannot read password file \"/nonexistent/redis.pass\": No such file or directory"},
    {"password file a directory", BASE "cluster:\n  redis: {address: \"127.0.0.1:6379\", password_file: /}\n",
     "t.yaml:8:53:", "cannot read password file \"/\": not a regular file"},
    {"password file empty name", BASE "cluster:\n  redis: {address: \"127.0.0.1:6379\", password_file: ''}\n",
     "t.yaml:8:53:", "cluster.redis.password_file: must not be empty"},
    {"redis unknown key", BASE "cluster:\n  redis: {address: \"127.0.0.1:6379\", passwd: x}\n", "t.yaml:8:38:",
     "unknown key \"passwd\" in cluster.redis"},
    {"cluster unknown key", BASE "cluster: {redis: {address: \"127.0.0.1:6379\"}, instanse: x}\n", "t.yaml:7:47:",
     "unknown key \"instanse\" in cluster (did you mean \"instance\"?)"},
    {"cluster name with braces", CLU "  name: \"a{b}\"\n", "t.yaml:9:9:",
     "cluster.name: \"a{b}\": must be 1 to 64 characters from A-Z a-z 0-9 . _ -"},
    {"cluster name with a colon", CLU "  name: \"a:b\"\n", "t.yaml:9:9:", "must be 1 to 64 characters"},
    {"cluster name 65 chars", CLU "  name: a1234567890123456789012345678901234567890123456789012345678901234\n",
     "t.yaml:9:9:", "must be 1 to 64 characters"},
    {"cluster name empty", CLU "  name: ''\n", "t.yaml:9:9:", "cluster.name: must not be empty"},
    {"cluster instance space", CLU "  instance: \"fra 1\"\n", "t.yaml:9:13:",
     "cluster.instance: \"fra 1\": must be 1 to 64 characters from A-Z a-z 0-9 . _ -"},
    {"cluster instance map", CLU "  instance: {a: 1}\n", "t.yaml:9:13:",
     "cluster.instance: expected a single value, got a mapping"},
    {"sync_interval 9ms", CLU "  sync_interval: 9ms\n", "t.yaml:9:18:",
     "cluster.sync_interval: must be from 10ms to 10s, got \"9ms\""},
    {"sync_interval 10001ms", CLU "  sync_interval: 10001ms\n", "t.yaml:9:18:", "must be from 10ms to 10s"},
    {"sync_interval 0s", CLU "  sync_interval: 0s\n", "t.yaml:9:18:", "must be from 10ms to 10s, got \"0s\""},
    {"sync_interval bare", CLU "  sync_interval: 100\n", "t.yaml:9:18:",
     "cluster.sync_interval: expected a duration such as 250ms, 2s, 5m or 1h, got \"100\""},
    {"timeout 0ms", CLU "  timeout: 0ms\n", "t.yaml:9:12:", "cluster.timeout: must be from 1ms to 60s, got \"0ms\""},
    {"timeout 61s", CLU "  timeout: 61s\n", "t.yaml:9:12:", "must be from 1ms to 60s"},
    {"timeout 2m", CLU "  timeout: 2m\n", "t.yaml:9:12:", "must be from 1ms to 60s, got \"2m\""},
    {"timeout fraction", CLU "  timeout: 0.5s\n", "t.yaml:9:12:", "cluster.timeout: expected a duration"},
    {"on_redis_failure closed", CLU "  on_redis_failure: closed\n", "t.yaml:9:21:",
     "cluster.on_redis_failure: expected one of local, open, got \"closed\""},
    {"on_redis_failure empty", CLU "  on_redis_failure:\n", "t.yaml:9:20:", "expected one of local, open"},
    {"scope cluster without cluster", BASE "policies:\n  client_rate_limit: {rate: 10/s, scope: cluster}\n",
     "t.yaml:8:42:", "policies.client_rate_limit: scope: cluster needs a cluster block"},
    {"scope global", BASE "policies:\n  client_rate_limit: {rate: 10/s, scope: global}\n", "t.yaml:8:42:",
     "policies.client_rate_limit.scope: expected one of instance, cluster, got \"global\""},
    /* a cluster block that is there but wrong: reported once, not again at scope */
    {"scope cluster with a broken cluster block",
     BASE "policies:\n  client_rate_limit: {rate: 10/s, scope: cluster}\ncluster: {}\n", "t.yaml:9:10:",
     "cluster: missing required key \"redis\""},
};

static void
test_bad_cases(void **state)
{
    int failed = 0;

    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        const struct bad_case *bc = &bad_cases[i];
        struct mrd_diag d;
        struct mrd_config *c = (struct mrd_config *)1;
        int rc;

        mrd_diag_init(&d);
        rc = mrd_config_parse(bc->yaml, strlen(bc->yaml), "t.yaml", &c, &d);
        if (rc != -1 || c != NULL || d.n != 1 || strncmp(d.msgs[0], bc->pos, strlen(bc->pos)) != 0 ||
            strstr(d.msgs[0], bc->msg) == NULL) {
            print_message("case \"%s\": want one diagnostic %s ... %s; rc=%d, got %zu:\n", bc->name, bc->pos, bc->msg,
                          rc, d.n);
            dump(&d);
            failed++;
        }
        mrd_config_free(c);
        mrd_diag_dispose(&d);
    }
    assert_int_equal(failed, 0);
}

/* ---- several problems, one pass ---- */

static void
test_multiple_errors(void **state)
{
    /* the duplicate region name is found by a cross-check after the walk,
     * but messages still come out in file order */
    static const char yaml[] = BASE_L
        "    protocols: [h2]\n"           /* 7 */
        "workers: 0\n"                    /* 8 */
        "foo: 1\n"                        /* 9 */
        "timeouts: {idle: 0s}\n"          /* 10 */
        "extra_regions:\n";               /* 11 */
    static const char *const want[][2] = {
        {"t.yaml:7:17:", "h2 needs a tls block"},
        {"t.yaml:8:10:", "workers"},
        {"t.yaml:9:1:", "unknown key \"foo\""},
        {"t.yaml:10:18:", "timeouts.idle"},
        {"t.yaml:11:1:", "unknown key \"extra_regions\""},
    };
    static const char yaml2[] = LISTEN
        "regions:\n"
        "  - name: a\n"                   /* 4 */
        "    location: {latitude: 100, longitude: 2}\n"  /* 5 */
        UPS                                /* 6 */
        "  - name: a\n"                   /* 7 */
        LOC UPS
        "    retries: 20\n";              /* 10 */
    static const char *const want2[][2] = {
        {"t.yaml:5:26:", "latitude"},
        {"t.yaml:7:11:", "duplicate region name"},
        {"t.yaml:10:14:", "retries"},
    };
    struct mrd_diag d;
    struct mrd_config *c;

    mrd_diag_init(&d);
    assert_int_equal(mrd_config_parse(yaml, strlen(yaml), "t.yaml", &c, &d), -1);
    assert_null(c);
    dump(&d);
    assert_int_equal(d.n, sizeof(want) / sizeof(want[0]));
    for (size_t i = 0; i < d.n; i++) {
        assert_true(strncmp(d.msgs[i], want[i][0], strlen(want[i][0])) == 0);
        assert_non_null(strstr(d.msgs[i], want[i][1]));
    }
    mrd_diag_dispose(&d);

    assert_int_equal(mrd_config_parse(yaml2, strlen(yaml2), "t.yaml", &c, &d), -1);
    dump(&d);
    assert_int_equal(d.n, sizeof(want2) / sizeof(want2[0]));
    for (size_t i = 0; i < d.n; i++) {
        assert_true(strncmp(d.msgs[i], want2[i][0], strlen(want2[i][0])) == 0);
        assert_non_null(strstr(d.msgs[i], want2[i][1]));
    }
    mrd_diag_dispose(&d);
}

/* diagnostics accumulate across calls: parse appends, never resets */
static void
test_diag_appends(void **state)
{
    struct mrd_diag d;
    struct mrd_config *c;

    mrd_diag_init(&d);
    mrd_diag_add(&d, "x.yaml", 3, 4, "first %d", 1);
    assert_string_equal(d.msgs[0], "x.yaml:3:4: first 1");
    assert_int_equal(mrd_config_parse("", 0, "t.yaml", &c, &d), -1);
    assert_int_equal(d.n, 2);
    assert_string_equal(d.msgs[0], "x.yaml:3:4: first 1");
    assert_true(strncmp(d.msgs[1], "t.yaml:1:1:", 11) == 0);
    mrd_diag_dispose(&d);
    assert_int_equal(d.n, 0);
}

static void
test_fallback_cycles(void **state)
{
    static const char yaml[] = LISTEN
        "regions:\n"
        "  - {name: a, fallback: b, location: {latitude: 0, longitude: 0}, upstreams: [{address: \"10.0.0.1:80\"}]}\n"
        "  - {name: b, fallback: c, location: {latitude: 0, longitude: 0}, upstreams: [{address: \"10.0.0.1:80\"}]}\n"
        "  - {name: c, fallback: a, location: {latitude: 0, longitude: 0}, upstreams: [{address: \"10.0.0.1:80\"}]}\n"
        /* d leads into the cycle but is not on it: reported once, not twice */
        "  - {name: d, fallback: b, location: {latitude: 0, longitude: 0}, upstreams: [{address: \"10.0.0.1:80\"}]}\n"
        "  - {name: e, fallback: f, location: {latitude: 0, longitude: 0}, upstreams: [{address: \"10.0.0.1:80\"}]}\n"
        "  - {name: f, fallback: e, location: {latitude: 0, longitude: 0}, upstreams: [{address: \"10.0.0.1:80\"}]}\n";
    struct mrd_diag d;
    struct mrd_config *c;

    mrd_diag_init(&d);
    assert_int_equal(mrd_config_parse(yaml, strlen(yaml), "t.yaml", &c, &d), -1);
    dump(&d);
    assert_int_equal(d.n, 2);
    assert_string_equal(d.msgs[0], "t.yaml:4:25: regions[0].fallback: fallback cycle: a -> b -> c -> a");
    assert_string_equal(d.msgs[1], "t.yaml:8:25: regions[4].fallback: fallback cycle: e -> f -> e");
    mrd_diag_dispose(&d);
}

/* ---- valid configurations ---- */

static void
test_defaults(void **state)
{
    struct mrd_config *c = parse_ok(BASE);
    const struct mrd_region_conf *r;

    assert_string_equal(c->file, "t.yaml");
    assert_int_equal(c->workers, 0);
    assert_null(c->user);
    assert_int_equal(c->n_listeners, 1);
    assert_string_equal(c->listeners[0].address, "127.0.0.1:8080");
    assert_int_equal(c->listeners[0].addr.ss_family, AF_INET);
    assert_int_equal(c->listeners[0].tls, 0);
    assert_int_equal(c->listeners[0].protocols, MRD_PROTO_HTTP1);
    assert_int_equal(c->listeners[0].n_alpn, 1);
    assert_int_equal(c->listeners[0].alpn[0], MRD_PROTO_HTTP1);
    assert_int_equal(c->listeners[0].tls_min_version, 13);
    assert_int_equal(c->listeners[0].pos.line, 2);
    assert_int_equal(c->listeners[0].pos.col, 14);
    assert_int_equal(c->admin.enabled, 0);
    assert_null(c->admin.address);
    assert_null(c->admin.token);
    assert_int_equal(c->timeouts.connect_ms, 2000);
    assert_int_equal(c->timeouts.request_header_ms, 10000);
    assert_int_equal(c->timeouts.upstream_response_ms, 30000);
    assert_int_equal(c->timeouts.idle_ms, 60000);
    assert_int_equal(c->timeouts.shutdown_ms, 30000);
    assert_int_equal(c->timeouts.request_body_ms, 30000);
    assert_int_equal(c->limits.max_header_bytes, 16384);
    assert_int_equal(c->limits.max_body_bytes, 10485760);
    assert_int_equal(c->limits.max_connections, 100000);
    assert_null(c->geo.database);
    assert_int_equal(c->geo.reload_check_ms, 60000);
    assert_int_equal(c->geo.n_networks, 0);
    assert_int_equal(c->geo.has_default_location, 0);
    assert_int_equal(c->client_ip.n_trusted_proxies, 0);
    assert_string_equal(c->client_ip.header, "X-Forwarded-For");
    assert_true(fabs(c->scoring.w_geography - 0.4) < 1e-9);
    assert_true(fabs(c->scoring.w_health - 0.3) < 1e-9);
    assert_true(fabs(c->scoring.w_latency - 0.2) < 1e-9);
    assert_true(fabs(c->scoring.w_cost - 0.1) < 1e-9);
    assert_int_equal(c->scoring.latency_ceiling_ms, 500);
    assert_int_equal(c->n_regions, 1);
    r = &c->regions[0];
    assert_string_equal(r->name, "a");
    assert_int_equal(r->pos.line, 4);
    assert_int_equal(r->pos.col, 11);
    assert_true(r->latitude == 1.0 && r->longitude == 2.0);
    assert_true(r->cost == 1.0);
    assert_int_equal(r->capacity_rps, 0);
    assert_int_equal(r->capacity_burst, 0);
    assert_null(r->fallback);
    assert_int_equal(r->fallback_idx, -1);
    assert_int_equal(r->balance, MRD_BALANCE_LEAST_CONN);
    assert_int_equal(r->retries, 2);
    assert_int_equal(r->upstream_protocol, MRD_UP_HTTP1);
    assert_int_equal(r->health.enabled, 0);
    assert_string_equal(r->health.path, "/healthz");
    assert_int_equal(r->health.interval_ms, 5000);
    assert_int_equal(r->health.timeout_ms, 2000);
    assert_int_equal(r->health.rise, 2);
    assert_int_equal(r->health.fall, 3);
    assert_int_equal(r->health.expect_status, 200);
    assert_int_equal(r->n_upstreams, 1);
    assert_string_equal(r->upstreams[0].address, "10.0.0.1:80");
    assert_int_equal(r->upstreams[0].weight, 1);
    assert_int_equal(r->upstreams[0].pos.line, 6);
    assert_int_equal(r->upstreams[0].pos.col, 27);
    assert_int_equal(c->policies.n_residency, 0);
    assert_int_equal(c->policies.n_block_countries, 0);
    assert_int_equal(c->policies.block_status, 403);
    assert_int_equal(c->policies.client_rate_enabled, 0);
    assert_int_equal(c->response_header_region, 1);
    assert_null(c->access_log.path);
    assert_int_equal(c->access_log.json, 1);
    assert_null(c->error_log.path);
    assert_int_equal(c->error_log.level, 2);
    mrd_config_free(c);
}

static void
test_weights_normalised(void **state)
{
    static const struct {
        const char *weights;
        double g, h, l, c;
    } cases[] = {
        {"{geography: 2, cost: 2}", 0.5, 0, 0, 0.5},
        {"{health: 1}", 0, 1, 0, 0},
        {"{geography: 0.4, health: 0.3, latency: 0.2, cost: 0.1}", 0.4, 0.3, 0.2, 0.1},
        {"{geography: 1, health: 1, latency: 1, cost: 1}", 0.25, 0.25, 0.25, 0.25},
        {"{geography: 3, latency: 1, cost: 0}", 0.75, 0, 0.25, 0},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char yaml[512];
        struct mrd_config *c;

        snprintf(yaml, sizeof(yaml), BASE "scoring:\n  weights: %s\n  latency_ceiling: 1s\n", cases[i].weights);
        c = parse_ok(yaml);
        assert_true(fabs(c->scoring.w_geography - cases[i].g) < 1e-9);
        assert_true(fabs(c->scoring.w_health - cases[i].h) < 1e-9);
        assert_true(fabs(c->scoring.w_latency - cases[i].l) < 1e-9);
        assert_true(fabs(c->scoring.w_cost - cases[i].c) < 1e-9);
        assert_int_equal(c->scoring.latency_ceiling_ms, 1000);
        mrd_config_free(c);
    }
}

static void
test_listener_protocols(void **state)
{
    static const char yaml[] = REGION
        "listeners:\n"
        "  - address: \"[::]:443\"\n"
        "    tls:\n"
        "      certificates:\n"
        "        - {cert: a.crt, key: a.key}\n"
        "        - {cert: b.crt, key: b.key}\n"
        "      min_version: \"1.2\"\n"
        "  - address: \"0.0.0.0:80\"\n"
        "    protocols: [h2c, http1]\n"
        "  - address: \"0.0.0.0:8443\"\n"
        "    tls: {certificates: [{cert: a.crt, key: a.key}]}\n"
        "    protocols: [http1, h2]\n"
        "  - address: \"[::1]:80\"\n";
    struct mrd_config *c = parse_ok(yaml);
    const struct mrd_listener_conf *l = c->listeners;

    assert_int_equal(c->n_listeners, 4);
    /* tls without protocols: h2 preferred, then http1 */
    assert_int_equal(l[0].tls, 1);
    assert_int_equal(l[0].addr.ss_family, AF_INET6);
    assert_int_equal(l[0].tls_min_version, 12);
    assert_int_equal(l[0].n_certs, 2);
    assert_string_equal(l[0].certs[1].cert, "b.crt");
    assert_string_equal(l[0].certs[1].key, "b.key");
    assert_int_equal(l[0].certs[1].pos.line, 10);
    assert_int_equal(l[0].certs[1].pos.col, 11);
    assert_int_equal(l[0].n_alpn, 2);
    assert_int_equal(l[0].alpn[0], MRD_PROTO_H2);
    assert_int_equal(l[0].alpn[1], MRD_PROTO_HTTP1);
    assert_int_equal(l[0].protocols, MRD_PROTO_H2 | MRD_PROTO_HTTP1);
    /* order as written */
    assert_int_equal(l[1].tls, 0);
    assert_int_equal(l[1].n_alpn, 2);
    assert_int_equal(l[1].alpn[0], MRD_PROTO_H2C);
    assert_int_equal(l[1].alpn[1], MRD_PROTO_HTTP1);
    assert_int_equal(l[2].tls_min_version, 13);
    assert_int_equal(l[2].alpn[0], MRD_PROTO_HTTP1);
    assert_int_equal(l[2].alpn[1], MRD_PROTO_H2);
    assert_int_equal(l[3].n_alpn, 1);
    assert_int_equal(l[3].protocols, MRD_PROTO_HTTP1);
    mrd_config_free(c);
}

static void
test_derived_values(void **state)
{
    static const char yaml[] = LISTEN
        "workers: 8\n"
        "user: nobody\n"
        "admin: {address: \"[::1]:9901\"}\n"
        "regions:\n"
        "  - name: us.east_1-b\n"
        "    location: {latitude: -90, longitude: 180}\n"
        "    capacity_rps: 10000\n"
        "    fallback: eu\n"
        "    balance: p2c_ewma\n"
        "    retries: 0\n"
        "    cost: 2\n"
        "    health_check: {path: /ping, interval: 250ms, timeout: 1m, rise: 1, fall: 1, expect_status: 204}\n"
        "    upstreams: [{address: \"10.0.0.1:80\", weight: 1000}, {address: \"10.0.0.2:80\"}]\n"
        "  - name: eu\n"
        "    location: {latitude: 50.5, longitude: -0.25}\n"
        "    capacity_rps: 5\n"
        "    balance: round_robin\n"
        "    upstream_protocol: h2c\n"
        "    upstreams: [{address: \"10.0.0.1:80\"}]\n"   /* same address as in another region: fine */
        "  - name: ap\n"
        "    location: {latitude: 0, longitude: 0}\n"
        "    capacity_rps: 100\n"
        "    capacity_burst: 7\n"
        "    fallback: eu\n"
        "    upstreams: [{address: \"10.0.0.3:80\"}]\n"
        "geo:\n"
        "  database: /x.mmdb\n"
        "  reload_check: 250ms\n"
        "  networks:\n"
        "    - {cidr: 10.1.0.0/16, country: de, continent: eu, latitude: 50, longitude: 8}\n"
        "    - {cidr: \"2001:db8::/32\", country: Us}\n"
        "  default_location: {latitude: 1.5, longitude: 2.5}\n"
        "client_ip:\n"
        "  trusted_proxies: [127.0.0.1, \"::1\", 10.0.0.0/8]\n"
        "  header: CF-Connecting-IP\n"
        "timeouts: {connect: 1h, idle: 5m, request_body: 250ms}\n"
        "limits: {max_header_bytes: 1024, max_body_bytes: 0, max_connections: 1}\n"
        "policies:\n"
        "  residency:\n"
        "    - name: gdpr\n"
        "      match: {continents: [eu], countries: [de, FR]}\n"
        "      regions: [eu, ap]\n"
        "  geo_block: {countries: [kp, IR], status: 451}\n"
        "  client_rate_limit: {rate: 1000/min}\n"
        "response_headers: {region: false}\n"
        "access_log: {path: /var/log/m.log, format: text}\n";
    struct mrd_config *c = parse_ok(yaml);
    const struct mrd_region_conf *r = c->regions;
    const struct mrd_policies_conf *p = &c->policies;

    assert_int_equal(c->workers, 8);
    assert_string_equal(c->user, "nobody");
    assert_int_equal(c->admin.enabled, 1);
    assert_int_equal(c->admin.addr.ss_family, AF_INET6);
    assert_null(c->admin.token);

    assert_string_equal(r[0].name, "us.east_1-b");
    assert_true(r[0].latitude == -90 && r[0].longitude == 180);
    assert_int_equal(r[0].capacity_rps, 10000);
    assert_int_equal(r[0].capacity_burst, 1000); /* rps / 10 */
    assert_string_equal(r[0].fallback, "eu");
    assert_int_equal(r[0].fallback_idx, 1);
    assert_int_equal(r[0].balance, MRD_BALANCE_P2C_EWMA);
    assert_int_equal(r[0].retries, 0);
    assert_true(r[0].cost == 2.0);
    assert_int_equal(r[0].health.enabled, 1);
    assert_string_equal(r[0].health.path, "/ping");
    assert_int_equal(r[0].health.interval_ms, 250);
    assert_int_equal(r[0].health.timeout_ms, 60000);
    assert_int_equal(r[0].health.rise, 1);
    assert_int_equal(r[0].health.fall, 1);
    assert_int_equal(r[0].health.expect_status, 204);
    assert_int_equal(r[0].upstreams[0].weight, 1000);
    assert_int_equal(r[0].upstreams[1].weight, 1);
    assert_true(r[1].latitude == 50.5 && r[1].longitude == -0.25);
    assert_int_equal(r[1].capacity_burst, 1); /* max(1, 5 / 10) */
    assert_int_equal(r[1].fallback_idx, -1);
    assert_int_equal(r[1].balance, MRD_BALANCE_ROUND_ROBIN);
    assert_int_equal(r[1].upstream_protocol, MRD_UP_H2C);
    assert_int_equal(r[0].upstream_protocol, MRD_UP_HTTP1);
    assert_int_equal(r[1].health.enabled, 0);
    assert_int_equal(r[2].capacity_burst, 7);
    assert_int_equal(r[2].fallback_idx, 1);

    assert_string_equal(c->geo.database, "/x.mmdb");
    assert_int_equal(c->geo.database_pos.line, 29);
    assert_int_equal(c->geo.database_pos.col, 13);
    assert_int_equal(c->geo.reload_check_ms, 250);
    assert_int_equal(c->geo.n_networks, 2);
    assert_string_equal(c->geo.networks[0].country, "DE");
    assert_string_equal(c->geo.networks[0].continent, "EU");
    assert_int_equal(c->geo.networks[0].has_location, 1);
    assert_true(c->geo.networks[0].latitude == 50 && c->geo.networks[0].longitude == 8);
    assert_int_equal(c->geo.networks[0].cidr.prefix, 16);
    assert_string_equal(c->geo.networks[1].country, "US");
    assert_string_equal(c->geo.networks[1].continent, "");
    assert_int_equal(c->geo.networks[1].has_location, 0);
    assert_int_equal(c->geo.networks[1].cidr.ip.family, AF_INET6);
    assert_int_equal(c->geo.has_default_location, 1);
    assert_true(c->geo.default_latitude == 1.5 && c->geo.default_longitude == 2.5);

    assert_int_equal(c->client_ip.n_trusted_proxies, 3);
    assert_int_equal(c->client_ip.trusted_proxies[0].prefix, 32);
    assert_int_equal(c->client_ip.trusted_proxies[1].prefix, 128);
    assert_int_equal(c->client_ip.trusted_proxies[2].prefix, 8);
    assert_string_equal(c->client_ip.header, "CF-Connecting-IP");

    assert_int_equal(c->timeouts.connect_ms, 3600000);
    assert_int_equal(c->timeouts.idle_ms, 300000);
    assert_int_equal(c->timeouts.shutdown_ms, 30000);
    assert_int_equal(c->timeouts.request_body_ms, 250);
    assert_int_equal(c->limits.max_header_bytes, 1024);
    assert_int_equal(c->limits.max_body_bytes, 0);
    assert_int_equal(c->limits.max_connections, 1);

    assert_int_equal(p->n_residency, 1);
    assert_string_equal(p->residency[0].name, "gdpr");
    assert_int_equal(p->residency[0].n_continents, 1);
    assert_string_equal(p->residency[0].continents[0], "EU");
    assert_int_equal(p->residency[0].n_countries, 2);
    assert_string_equal(p->residency[0].countries[0], "DE");
    assert_string_equal(p->residency[0].countries[1], "FR");
    assert_int_equal(p->residency[0].n_regions, 2);
    assert_int_equal(p->residency[0].region_idx[0], 1);
    assert_int_equal(p->residency[0].region_idx[1], 2);
    assert_int_equal(p->n_block_countries, 2);
    assert_string_equal(p->block_countries[0], "KP");
    assert_string_equal(p->block_countries[1], "IR");
    assert_int_equal(p->block_status, 451);
    assert_int_equal(p->client_rate_enabled, 1);
    assert_int_equal(p->client_rate_milli_per_s, 16667);
    assert_int_equal(p->client_burst, 17); /* one second of rate, rounded up */

    assert_int_equal(c->response_header_region, 0);
    assert_string_equal(c->access_log.path, "/var/log/m.log");
    assert_int_equal(c->access_log.json, 0);
    mrd_config_free(c);
}

static void
test_small_values(void **state)
{
    static const struct {
        const char *extra;
        const char *log_path; /* NULL = off */
        uint64_t burst;
    } cases[] = {
        {"access_log: {path: off}\npolicies: {client_rate_limit: {rate: 10/s}}\n", NULL, 10},
        {"access_log: {path: \"-\"}\npolicies: {client_rate_limit: {rate: 1/min}}\n", "-", 1},
        {"access_log: {format: json}\npolicies: {client_rate_limit: {rate: 1500/min, burst: 3}}\n", NULL, 3},
        {"workers: auto\npolicies: {client_rate_limit: {rate: 2500/s}}\n", NULL, 2500},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char yaml[512];
        struct mrd_config *c;

        snprintf(yaml, sizeof(yaml), BASE "%s", cases[i].extra);
        c = parse_ok(yaml);
        if (cases[i].log_path == NULL)
            assert_null(c->access_log.path);
        else
            assert_string_equal(c->access_log.path, cases[i].log_path);
        assert_int_equal(c->access_log.json, 1);
        assert_int_equal(c->policies.client_burst, cases[i].burst);
        assert_int_equal(c->workers, 0);
        mrd_config_free(c);
    }
}

/* a directory of files for password_file, removed by rm_tmpdir */
static char tmpdir[64];

static const char *
tmp_file(const char *name, const char *content, size_t len)
{
    static char path[128];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(content, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    return path;
}

static void
rm_tmpdir(void)
{
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    assert_int_equal(system(cmd), 0);
}

/* conf/example.yaml with its production-only password file pointed at a test file */
static int
load_example(struct mrd_config **c, struct mrd_diag *d)
{
    static const char prod[] = "/etc/meridian/redis.pass";
    char text[32768], out[33000];
    const char *at, *pw;
    FILE *f = fopen("conf/example.yaml", "rb");
    size_t len;
    int rc;

    assert_non_null(f);
    len = fread(text, 1, sizeof(text) - 1, f);
    assert_true(len > 0 && len < sizeof(text) - 1);
    fclose(f);
    text[len] = '\0';
    assert_non_null(at = strstr(text, prod));
    strcpy(tmpdir, "/tmp/mrd-test-config-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    pw = tmp_file("redis.pass", "s3cret\n", 7);
    len = (size_t)snprintf(out, sizeof(out), "%.*s%s%s", (int)(at - text), text, pw, at + strlen(prod));
    assert_true(len < sizeof(out));
    rc = mrd_config_parse(out, len, "conf/example.yaml", c, d);
    rm_tmpdir();
    return rc;
}

static void
test_example_file(void **state)
{
    struct mrd_diag d;
    struct mrd_config *c;
    int rc;

    mrd_diag_init(&d);
    rc = load_example(&c, &d);
    dump(&d);
    assert_int_equal(rc, 0);
    assert_int_equal(d.n, 0);
    assert_string_equal(c->file, "conf/example.yaml");
    assert_int_equal(c->n_listeners, 3);
    assert_int_equal(c->listeners[1].tls, 1);
    assert_int_equal(c->listeners[1].alpn[0], MRD_PROTO_H2);
    assert_int_equal(c->listeners[1].proxy_protocol, 0);
    assert_int_equal(c->listeners[2].proxy_protocol, 1);
    assert_int_equal(c->admin.enabled, 1);
    assert_string_equal(c->admin.token, "s3cret");
    assert_int_equal(c->n_regions, 3);
    assert_int_equal(c->regions[0].fallback_idx, 1);
    assert_int_equal(c->regions[1].upstreams[1].send_proxy, 2);
    assert_int_equal(c->regions[2].capacity_burst, 500);
    assert_int_equal(c->geo.reload_check_ms, 60000);
    assert_int_equal(c->policies.n_residency, 2);
    assert_int_equal(c->policies.residency[0].n_countries, 1);
    assert_int_equal(c->policies.residency[0].region_idx[1], 1);
    assert_int_equal(c->policies.residency[1].region_idx[0], 2);
    assert_int_equal(c->policies.client_burst, 100);
    assert_string_equal(c->access_log.path, "-");
    assert_int_equal(c->regions[0].tls.enabled, 0);
    assert_int_equal(c->regions[2].tls.enabled, 1);
    assert_string_equal(c->regions[2].tls.server_name, "api.eu.example.com");
    assert_string_equal(c->regions[2].tls.certificate.key, "conf/tls/client.key");
    assert_int_equal(c->regions[2].tls.verify, 1);
    assert_int_equal(c->regions[2].tls.min_version, 12);
    assert_int_equal(c->cluster.enabled, 1);
    assert_string_equal(c->cluster.host, "127.0.0.1");
    assert_int_equal(c->cluster.port, 6379);
    assert_string_equal(c->cluster.password, "s3cret");
    assert_string_equal(c->cluster.name, "edge");
    assert_string_equal(c->cluster.instance, "fra1");
    assert_int_equal(c->cluster.sync_interval_ms, 100);
    assert_int_equal(c->cluster.timeout_ms, 200);
    assert_int_equal(c->cluster.on_failure, MRD_CLUSTER_LOCAL);
    assert_int_equal(c->policies.client_rate_cluster, 1);
    mrd_config_free(c);
    mrd_diag_dispose(&d);
}

static void
test_upstream_tls_defaults(void **state)
{
    struct mrd_config *c = parse_ok(BASE "    upstream_tls: {}\n");
    const struct mrd_upstream_tls_conf *t = &c->regions[0].tls;

    assert_int_equal(t->enabled, 1);
    assert_null(t->ca); /* the system store */
    assert_null(t->server_name);
    assert_null(t->certificate.cert);
    assert_int_equal(t->verify, 1);
    assert_int_equal(t->min_version, 12);
    assert_int_equal(t->pos.line, 7);
    assert_int_equal(t->pos.col, 19);
    mrd_config_free(c);
    c = parse_ok(BASE "    upstream_tls:\n      ca: a.pem\n      verify: false\n      min_version: \"1.3\"\n"
                      "      certificate: {cert: c.pem, key: k.pem}\n      server_name: 10.0.0.1\n");
    t = &c->regions[0].tls;
    assert_string_equal(t->ca, "a.pem");
    assert_int_equal(t->ca_pos.line, 8);
    assert_int_equal(t->ca_pos.col, 11);
    assert_int_equal(t->verify, 0);
    assert_int_equal(t->verify_pos.line, 9);
    assert_int_equal(t->verify_pos.col, 15);
    assert_int_equal(t->min_version, 13);
    assert_string_equal(t->certificate.cert, "c.pem");
    assert_int_equal(t->certificate.pos.line, 11);
    assert_int_equal(t->certificate.pos.col, 20);
    assert_string_equal(t->server_name, "10.0.0.1");
    assert_int_equal(c->regions[0].n_upstreams, 1);
    mrd_config_free(c);
}

static void
test_load_missing_file(void **state)
{
    struct mrd_diag d;
    struct mrd_config *c = (struct mrd_config *)1;

    mrd_diag_init(&d);
    assert_int_equal(mrd_config_load("/nonexistent/meridian.yaml", &c, &d), -1);
    assert_null(c);
    assert_int_equal(d.n, 1);
    assert_string_equal(d.msgs[0], "/nonexistent/meridian.yaml:1:1: cannot read: No such file or directory");
    mrd_diag_dispose(&d);
}

static void
test_deep_nesting(void **state)
{
    char yaml[400];
    size_t o = 0;
    struct mrd_diag d;
    struct mrd_config *c;

    o += (size_t)snprintf(yaml, sizeof(yaml), "a: ");
    for (int i = 0; i < 100; i++)
        yaml[o++] = '[';
    for (int i = 0; i < 100; i++)
        yaml[o++] = ']';
    yaml[o++] = '\n';
    mrd_diag_init(&d);
    assert_int_equal(mrd_config_parse(yaml, o, "t.yaml", &c, &d), -1);
    assert_int_equal(d.n, 1);
    assert_non_null(strstr(d.msgs[0], "t.yaml:1:67: YAML nested deeper than 64 levels"));
    mrd_diag_dispose(&d);
}

/* ---- PROXY protocol keys ---- */

static void
test_proxy_protocol_keys(void **state)
{
    struct mrd_config *c = parse_ok("regions:\n  - name: a\n" LOC
                                    "    upstreams:\n      - {address: \"10.0.0.1:80\"}\n"
                                    "      - {address: \"10.0.0.2:80\", send_proxy: v1}\n"
                                    "      - {address: \"10.0.0.3:80\", send_proxy: v2}\n"
                                    "client_ip: {trusted_proxies: [127.0.0.1]}\n" LISTEN
                                    "    proxy_protocol: true\n  - {address: \"127.0.0.1:8081\", proxy_protocol: false}\n");

    assert_int_equal(c->regions[0].n_upstreams, 3);
    assert_int_equal(c->regions[0].upstreams[0].send_proxy, 0);
    assert_int_equal(c->regions[0].upstreams[1].send_proxy, 1);
    assert_int_equal(c->regions[0].upstreams[2].send_proxy, 2);
    assert_int_equal(c->n_listeners, 2);
    assert_int_equal(c->listeners[0].proxy_protocol, 1);
    assert_int_equal(c->listeners[1].proxy_protocol, 0);
    mrd_config_free(c);
    /* false needs no trusted proxies */
    c = parse_ok(BASE_L "    proxy_protocol: false\n");
    assert_int_equal(c->listeners[0].proxy_protocol, 0);
    mrd_config_free(c);
}

/* ---- cluster (SPEC 8) ---- */

static void
test_cluster_defaults(void **state)
{
    struct mrd_config *c = parse_ok(BASE "policies: {client_rate_limit: {rate: 10/s}}\n");
    const struct mrd_cluster_conf *cl = &c->cluster;

    /* no block: all zero, and client limits per instance */
    assert_int_equal(cl->enabled, 0);
    assert_null(cl->address);
    assert_null(cl->host);
    assert_null(cl->unix_path);
    assert_null(cl->password_file);
    assert_null(cl->password);
    assert_null(cl->name);
    assert_null(cl->instance);
    assert_int_equal(c->policies.client_rate_cluster, 0);
    mrd_config_free(c);

    c = parse_ok(CLU "policies: {client_rate_limit: {rate: 10/s}}\n");
    cl = &c->cluster;
    assert_int_equal(cl->enabled, 1);
    assert_int_equal(cl->pos.line, 7); /* the key "cluster" */
    assert_int_equal(cl->pos.col, 1);
    assert_string_equal(cl->address, "127.0.0.1:6379");
    assert_string_equal(cl->host, "127.0.0.1");
    assert_int_equal(cl->port, 6379);
    assert_null(cl->unix_path);
    assert_null(cl->password_file);
    assert_null(cl->password);
    assert_int_equal(cl->database, 0);
    assert_string_equal(cl->name, "meridian");
    assert_null(cl->instance); /* the host name, filled in at start */
    assert_int_equal(cl->sync_interval_ms, 100);
    assert_int_equal(cl->timeout_ms, 200); /* 2 * sync_interval */
    assert_int_equal(cl->on_failure, MRD_CLUSTER_LOCAL);
    assert_int_equal(c->policies.client_rate_cluster, 0); /* scope: instance */
    mrd_config_free(c);

    c = parse_ok(CLU "policies: {client_rate_limit: {rate: 10/s, scope: instance}}\n");
    assert_int_equal(c->policies.client_rate_cluster, 0);
    mrd_config_free(c);
}

/* timeout: max(2 * sync_interval, 50ms) unless given */
static void
test_cluster_timeout_default(void **state)
{
    static const struct {
        const char *extra;
        uint64_t sync_ms, timeout_ms;
    } cases[] = {
        {"  sync_interval: 10ms\n", 10, 50},
        {"  sync_interval: 25ms\n", 25, 50},
        {"  sync_interval: 26ms\n", 26, 52},
        {"  sync_interval: 1s\n", 1000, 2000},
        {"  sync_interval: 10s\n", 10000, 20000},
        {"  sync_interval: 10s\n  timeout: 1ms\n", 10000, 1},
        {"  timeout: 60s\n", 100, 60000},
        {"  timeout: 1m\n", 100, 60000},
        {"  timeout: 50ms\n  sync_interval: 5s\n", 5000, 50}, /* order does not matter */
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char yaml[512];
        struct mrd_config *c;

        snprintf(yaml, sizeof(yaml), CLU "%s", cases[i].extra);
        c = parse_ok(yaml);
        if (c->cluster.sync_interval_ms != cases[i].sync_ms || c->cluster.timeout_ms != cases[i].timeout_ms)
            fail_msg("case %zu: sync %llu timeout %llu", i, (unsigned long long)c->cluster.sync_interval_ms,
                     (unsigned long long)c->cluster.timeout_ms);
        mrd_config_free(c);
    }
}

static void
test_cluster_addresses(void **state)
{
    static const struct {
        const char *address; /* YAML */
        const char *written, *host, *unix_path;
        unsigned port;
    } cases[] = {
        {"\"127.0.0.1:6379\"", "127.0.0.1:6379", "127.0.0.1", NULL, 6379},
        {"\"[::1]:6380\"", "[::1]:6380", "::1", NULL, 6380},
        {"\"[2001:db8::7]:1\"", "[2001:db8::7]:1", "2001:db8::7", NULL, 1},
        {"redis:65535", "redis:65535", "redis", NULL, 65535},
        {"Redis.Internal.Example.:6379", "Redis.Internal.Example.:6379", "redis.internal.example", NULL, 6379},
        {"unix:/run/redis/redis.sock", "unix:/run/redis/redis.sock", NULL, "/run/redis/redis.sock", 0},
        {"\"unix:/r\"", "unix:/r", NULL, "/r", 0},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char yaml[512];
        struct mrd_config *c;
        const struct mrd_cluster_conf *cl;

        snprintf(yaml, sizeof(yaml), REDIS_ADDR("%s"), cases[i].address);
        c = parse_ok(yaml);
        cl = &c->cluster;
        assert_string_equal(cl->address, cases[i].written);
        if (cases[i].host == NULL)
            assert_null(cl->host);
        else
            assert_string_equal(cl->host, cases[i].host);
        if (cases[i].unix_path == NULL)
            assert_null(cl->unix_path);
        else
            assert_string_equal(cl->unix_path, cases[i].unix_path);
        assert_int_equal(cl->port, cases[i].port);
        mrd_config_free(c);
    }
}

/* BASE, the cluster block with password_file (line 10, column 20) and what follows */
static struct mrd_config *
parse_password(const char *path, struct mrd_diag *d, const char *after)
{
    char yaml[1024];
    struct mrd_config *c = NULL;

    snprintf(yaml, sizeof(yaml),
             BASE "cluster:\n  redis:\n    address: \"127.0.0.1:6379\"\n    password_file: \"%s\"\n%s", path,
             after);
    mrd_diag_init(d);
    if (mrd_config_parse(yaml, strlen(yaml), "t.yaml", &c, d) != 0)
        assert_null(c);
    return c;
}

static void
expect_password(const char *name, const char *content, size_t len, const char *want)
{
    struct mrd_diag d;
    const char *path = tmp_file(name, content, len);
    struct mrd_config *c = parse_password(path, &d, "");

    dump(&d);
    assert_int_equal(d.n, 0);
    assert_non_null(c);
    assert_string_equal(c->cluster.password_file, path);
    assert_string_equal(c->cluster.password, want);
    mrd_config_free(c);
    mrd_diag_dispose(&d);
}

static void
expect_password_error(const char *path, const char *want)
{
    struct mrd_diag d;
    struct mrd_config *c = parse_password(path, &d, "");
    char full[512];

    snprintf(full, sizeof(full), "t.yaml:10:20: cluster.redis.password_file: %s", want);
    assert_null(c);
    if (d.n != 1 || strcmp(d.msgs[0], full) != 0) {
        print_message("want: %s\n", full);
        dump(&d);
        fail();
    }
    mrd_diag_dispose(&d);
}

static void
test_cluster_password_file(void **state)
{
    char big[4098], max_lf[4096], other[96], msg[256];
    const char *path;

    strcpy(tmpdir, "/tmp/mrd-test-config-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));

    expect_password("lf", "s3cret\n", 7, "s3cret");
    expect_password("crlf", "s3cret\r\n", 8, "s3cret");
    expect_password("none", "s3cret", 6, "s3cret");
    expect_password("two", "s3cret\n\n", 8, "s3cret\n"); /* only one newline is removed */
    expect_password("cr", "s3cret\r", 7, "s3cret\r");     /* a lone CR is kept */
    expect_password("inner", "a b\nc\n", 6, "a b\nc");
    expect_password("one", "x", 1, "x");
    memset(big, 'p', sizeof(big));
    big[4096] = '\0';
    expect_password("max", big, 4096, big);
    memcpy(max_lf, big, 4095);
    max_lf[4095] = '\n'; /* 4096 bytes with the newline */
    big[4095] = '\0';
    expect_password("max-lf", max_lf, 4096, big);

    path = tmp_file("empty", "", 0);
    snprintf(msg, sizeof(msg), "password file \"%s\" is empty", path);
    expect_password_error(path, msg);
    path = tmp_file("lf-only", "\n", 1);
    snprintf(msg, sizeof(msg), "password file \"%s\" is empty", path);
    expect_password_error(path, msg);
    path = tmp_file("crlf-only", "\r\n", 2);
    snprintf(msg, sizeof(msg), "password file \"%s\" is empty", path);
    expect_password_error(path, msg);
    memset(big, 'p', sizeof(big));
    path = tmp_file("big", big, 4097);
    snprintf(msg, sizeof(msg), "password file \"%s\" is larger than 4096 bytes", path);
    expect_password_error(path, msg);
    big[4096] = '\n'; /* 4098 bytes with the newline: still over */
    path = tmp_file("big-lf", big, 4098);
    snprintf(msg, sizeof(msg), "password file \"%s\" is larger than 4096 bytes", path);
    expect_password_error(path, msg);
    path = tmp_file("nul", "a\0b\n", 4);
    snprintf(msg, sizeof(msg), "password file \"%s\" contains a NUL byte", path);
    expect_password_error(path, msg);
    snprintf(other, sizeof(other), "%s/absent", tmpdir);
    snprintf(msg, sizeof(msg), "cannot read password file \"%s\": No such file or directory", other);
    expect_password_error(other, msg);
    snprintf(msg, sizeof(msg), "cannot read password file \"%s\": not a regular file", tmpdir);
    expect_password_error(tmpdir, msg);
    snprintf(other, sizeof(other), "%s/lf/x", tmpdir); /* "lf" is a file */
    snprintf(msg, sizeof(msg), "cannot read password file \"%s\": Not a directory", other);
    expect_password_error(other, msg);
    /* a FIFO must not block the load */
    snprintf(other, sizeof(other), "%s/fifo", tmpdir);
    assert_int_equal(mkfifo(other, 0600), 0);
    snprintf(msg, sizeof(msg), "cannot read password file \"%s\": not a regular file", other);
    expect_password_error(other, msg);
    /* unreadable (root reads it anyway) */
    if (geteuid() != 0) {
        path = tmp_file("unreadable", "s3cret\n", 7);
        assert_int_equal(chmod(path, 0), 0);
        snprintf(msg, sizeof(msg), "cannot read password file \"%s\": Permission denied", path);
        expect_password_error(path, msg);
    }
    rm_tmpdir();
}

/* every key given, the block after policies (scope is checked once all is read) */
static void
test_cluster_full(void **state)
{
    struct mrd_diag d;
    struct mrd_config *c;
    const struct mrd_cluster_conf *cl;
    const char *path;

    strcpy(tmpdir, "/tmp/mrd-test-config-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    path = tmp_file("redis.pass", "hunter2\n", 8);
    c = parse_password(path, &d,
                       "    database: 15\n"
                       "  name: edge-1.prod_eu\n"
                       "  instance: fra1\n"
                       "  sync_interval: 250ms\n"
                       "  on_redis_failure: open\n"
                       "  timeout: 1s\n");
    dump(&d);
    assert_int_equal(d.n, 0);
    cl = &c->cluster;
    assert_int_equal(cl->enabled, 1);
    assert_int_equal(cl->pos.line, 7);
    assert_int_equal(cl->pos.col, 1);
    assert_string_equal(cl->password, "hunter2");
    assert_int_equal(cl->database, 15);
    assert_string_equal(cl->name, "edge-1.prod_eu");
    assert_string_equal(cl->instance, "fra1");
    assert_int_equal(cl->sync_interval_ms, 250);
    assert_int_equal(cl->timeout_ms, 1000);
    assert_int_equal(cl->on_failure, MRD_CLUSTER_OPEN);
    mrd_config_free(c);
    mrd_diag_dispose(&d);

    /* 64 characters, the largest database, scope: cluster before the block */
    c = parse_ok(BASE "policies:\n  client_rate_limit: {rate: 1000/min, burst: 100, scope: cluster}\n"
                      "cluster:\n"
                      "  redis: {address: \"unix:/run/redis.sock\", database: 2147483647}\n"
                      "  name: a123456789012345678901234567890123456789012345678901234567890123\n"
                      "  instance: B123456789012345678901234567890123456789012345678901234567890123\n"
                      "  on_redis_failure: local\n");
    cl = &c->cluster;
    assert_int_equal(cl->pos.line, 9);
    assert_int_equal(cl->database, 2147483647);
    assert_int_equal(strlen(cl->name), 64);
    assert_int_equal(strlen(cl->instance), 64);
    assert_int_equal(cl->on_failure, MRD_CLUSTER_LOCAL);
    assert_string_equal(cl->unix_path, "/run/redis.sock");
    assert_int_equal(c->policies.client_rate_cluster, 1);
    assert_int_equal(c->policies.client_burst, 100);
    mrd_config_free(c);
    rm_tmpdir();
}

/* ---- durations and rates ---- */

static void
test_parse_duration(void **state)
{
    static const struct {
        const char *in;
        int rc;
        uint64_t ms;
    } cases[] = {
        {"250ms", 0, 250},  {"2s", 0, 2000},   {"5m", 0, 300000}, {"1h", 0, 3600000}, {"0s", 0, 0},
        {"0ms", 0, 0},      {"007s", 0, 7000}, {"1000ms", 0, 1000},
        {"18446744073709551615ms", 0, UINT64_MAX},
        {"18446744073709551616ms", -1, 0}, /* overflow */
        {"5124095576030432h", -1, 0},      /* overflow in the unit */
        {"", -1, 0},        {"5", -1, 0},      {"s", -1, 0},      {"-1s", -1, 0},     {"+1s", -1, 0},
        {"1.5s", -1, 0},    {"1 s", -1, 0},    {" 1s", -1, 0},    {"1s ", -1, 0},     {"1S", -1, 0},
        {"1sec", -1, 0},    {"1d", -1, 0},     {"1mss", -1, 0},   {"1hm", -1, 0},     {"1us", -1, 0},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t ms = 12345;
        int rc = mrd_parse_duration_ms(cases[i].in, &ms);

        if (rc != cases[i].rc || (rc == 0 && ms != cases[i].ms))
            fail_msg("duration \"%s\": rc %d ms %llu", cases[i].in, rc, (unsigned long long)ms);
    }
}

static void
test_parse_rate(void **state)
{
    static const struct {
        const char *in;
        int rc;
        uint64_t milli;
    } cases[] = {
        {"1/s", 0, 1000},       {"100/s", 0, 100000}, {"1000/min", 0, 16667}, {"60/min", 0, 1000},
        {"1/min", 0, 17},       {"90/min", 0, 1500},  {"18446744073709551/s", 0, 18446744073709551000ull},
        {"18446744073709552/s", -1, 0}, /* * 1000 overflows */
        {"0/s", -1, 0},         {"0/min", -1, 0},     {"", -1, 0},            {"/s", -1, 0},
        {"10", -1, 0},          {"10/", -1, 0},       {"10/h", -1, 0},        {"10/sec", -1, 0},
        {"10/m", -1, 0},        {"-1/s", -1, 0},      {"1.5/s", -1, 0},       {"10 /s", -1, 0},
        {"10/s ", -1, 0},       {"10/S", -1, 0},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t milli = 12345;
        int rc = mrd_parse_rate_milli(cases[i].in, &milli);

        if (rc != cases[i].rc || (rc == 0 && milli != cases[i].milli))
            fail_msg("rate \"%s\": rc %d milli %llu", cases[i].in, rc, (unsigned long long)milli);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_cases),
        cmocka_unit_test(test_multiple_errors),
        cmocka_unit_test(test_diag_appends),
        cmocka_unit_test(test_fallback_cycles),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_weights_normalised),
        cmocka_unit_test(test_listener_protocols),
        cmocka_unit_test(test_derived_values),
        cmocka_unit_test(test_small_values),
        cmocka_unit_test(test_example_file),
        cmocka_unit_test(test_upstream_tls_defaults),
        cmocka_unit_test(test_load_missing_file),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_proxy_protocol_keys),
        cmocka_unit_test(test_cluster_defaults),
        cmocka_unit_test(test_cluster_timeout_default),
        cmocka_unit_test(test_cluster_addresses),
        cmocka_unit_test(test_cluster_password_file),
        cmocka_unit_test(test_cluster_full),
        cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_parse_rate),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
