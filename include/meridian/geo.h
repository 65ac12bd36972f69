/*
 * geo.h: where a client is (SPEC 3.1) and how far apart two places are
 * (SPEC 3.3). A struct mrd_geo is built once per configuration generation
 * from geo.networks (a longest-prefix-match table) and geo.database (a MaxMind
 * DB, memory-mapped), and is read-only afterwards, so any number of threads
 * may call mrd_geo_locate() on it at once. Nothing here logs or touches the
 * network; opening the database file is the only I/O.
 */
#ifndef MERIDIAN_GEO_H
#define MERIDIAN_GEO_H

#include "meridian/addr.h"

struct mrd_geo_conf;

/* Earth's mean radius (IUGG) and half its circumference, SPEC 3.3 */
#define MRD_EARTH_RADIUS_KM 6371.0088
#define MRD_GEO_HALF_CIRCUMFERENCE_KM 20015.1

/* where a location's coordinates came from (SPEC 4 "source") */
enum mrd_geo_source {
    MRD_GEO_UNKNOWN = 0, /* no coordinates from any source */
    MRD_GEO_NETWORK,     /* a geo.networks entry */
    MRD_GEO_DATABASE,    /* the MaxMind database */
    MRD_GEO_DEFAULT,     /* geo.default_location */
};

/*
 * A client's location. Two independent parts:
 *  - identity: country (ISO 3166 alpha-2, upper case) and continent (two
 *    letters, e.g. "EU"), "" when not known. Both come as a pair from the
 *    first source that names either: the best network entry, else the
 *    database record. The default location has no identity.
 *  - coordinates: latitude/longitude in degrees, valid only when known == 1;
 *    from the first source that has them: the best network entry, else the
 *    database record, else geo.default_location. `source` says which, and is
 *    MRD_GEO_UNKNOWN (known == 0, coordinates 0) when none had them.
 * So a client can have a country but unknown coordinates (a Country
 * database, no default_location), or default coordinates and a database
 * country.
 */
struct mrd_location {
    int known; /* 1 when latitude/longitude are valid */
    double latitude, longitude;
    char country[3];   /* "" when unknown */
    char continent[3]; /* "" when unknown */
    enum mrd_geo_source source;
};

/* owned by: the configuration generation that built it; opaque */
struct mrd_geo;

/* "network", "database", "default" or "unknown" (any other value too). */
const char *mrd_geo_source_name(enum mrd_geo_source s);

/*
 * Build the lookup table from conf->networks and open conf->database (when
 * set) with MMDB_MODE_MMAP. conf is copied: it need not outlive the result.
 * Two networks with the same CIDR: the first listed wins.
 * Returns the table (free with mrd_geo_free), or NULL with *err set to a
 * message naming the database path and the reason. *err points into a
 * thread-local buffer that stays valid until this thread's next call.
 */
struct mrd_geo *mrd_geo_new(const struct mrd_geo_conf *conf, const char **err);

/* Close the database and free the table. NULL is accepted. */
void mrd_geo_free(struct mrd_geo *g);

/*
 * Locate ip (IPv4-mapped addresses must already be folded to IPv4, as
 * mrd_ip_parse and mrd_ip_from_sockaddr do) by SPEC 3.1: the longest matching
 * network, else the database, else the default location, else unknown; see
 * struct mrd_location for how parts combine. Always fills *out. The database
 * is consulted only when the network entry (if any) lacks identity or
 * coordinates. Only the single longest match counts: a shorter network
 * containing it does not fill in what it lacks (the database does). A
 * database error is treated as a miss. g may be NULL (every
 * address is unknown). Thread-safe; allocates nothing.
 */
void mrd_geo_locate(const struct mrd_geo *g, const struct mrd_ip *ip, struct mrd_location *out);

/* Great-circle distance in km (haversine, radius MRD_EARTH_RADIUS_KM) between
 * two points given in degrees. Symmetric; 0 for the same point. */
double mrd_haversine_km(double lat1, double lon1, double lat2, double lon2);

/*
 * A per-thread cache of locate results, direct-mapped by address. A MaxMind
 * lookup costs about a microsecond, several times the rest of a routing
 * decision, and clients repeat themselves (keep-alive, retries, page loads).
 * The owner resets it whenever the geo table changes (a new generation).
 */
#define MRD_GEO_CACHE_SLOTS 4096

struct mrd_geo_cache_slot {
    struct mrd_ip ip;
    struct mrd_location loc;
    int used;
};

struct mrd_geo_cache {
    struct mrd_geo_cache_slot slots[MRD_GEO_CACHE_SLOTS];
    uint64_t hits, misses;
};

void mrd_geo_cache_reset(struct mrd_geo_cache *c);
/* mrd_geo_locate through the cache */
void mrd_geo_locate_cached(const struct mrd_geo *g, struct mrd_geo_cache *c, const struct mrd_ip *ip,
                           struct mrd_location *out);

/* Geography factor of SPEC 3.3: 1 - d_km / 20015.1, clamped to [0, 1]
 * (antipodes, slightly over 20015.1 km, give 0; NaN gives 0). */
double mrd_geo_factor(double d_km);

#endif
