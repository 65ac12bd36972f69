/*
 * geo.h: where a client is (SPEC 3.1) and how far apart two places are
 * (SPEC 3.3). A struct mrd_geo is built once per configuration generation
 * from geo.networks (a longest-prefix-match table) and geo.database (a MaxMind
 * DB, memory-mapped). The table is read-only afterwards; the database can be
 * replaced underneath it (SPEC 11, mrd_geo_db_check) while any number of
 * threads call mrd_geo_locate() on it. Nothing here logs or touches the
 * network; opening and stat()ing the database file is the only I/O.
 */
#ifndef MERIDIAN_GEO_H
#define MERIDIAN_GEO_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

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
    MRD_GEO_COUNTRY,     /* the centroid of the client's country (no coordinates anywhere) */
};

/*
 * A client's location. Two independent parts:
 *  - identity: country (ISO 3166 alpha-2, upper case) and continent (two
 *    letters, e.g. "EU"), "" when not known. Both come as a pair from the
 *    first source that names either: the best network entry, else the
 *    database record (its country, else its registered_country, the
 *    country the address block is registered in: anycast and
 *    infrastructure addresses such as 1.1.1.1 have only that). The default
 *    location has no identity.
 *  - coordinates: latitude/longitude in degrees, valid only when known == 1;
 *    from the first source that has them: the best network entry, else the
 *    database record, else the centroid of the identity's country
 *    (country_centroids.c), else geo.default_location. `source` says which,
 *    and is MRD_GEO_UNKNOWN (known == 0, coordinates 0) when none had them.
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

/* "network", "database", "country", "default" or "unknown" (any other value too). */
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

/* Close the database and free the table. NULL is accepted. No other thread
 * may be using g (the generation's reference count guarantees it). */
void mrd_geo_free(struct mrd_geo *g);

/*
 * Database replacement without a reload (SPEC 11).
 *
 * The open database is a reference-counted version behind an atomic
 * pointer. A lookup pins the current version (increments its reader count,
 * then re-reads the pointer: if it moved, it unpins and retries), uses it and
 * unpins; no lock. mrd_geo_db_check, called by one thread only (the main
 * thread's geo.reload_check timer), stat()s geo.database; when the file's
 * identity (st_dev, st_ino, st_mtime, st_size) differs from the open
 * version's, it opens and validates the file, publishes it as the current
 * version (a new epoch) and retires the old one. A retired version's mapping
 * is closed by a later check once no lookup pins it (the pointer moved
 * before the check read the count, so no new lookup can pin it). Its small
 * descriptor is kept until mrd_geo_free, so that a lookup that raced the
 * swap can still touch its counter.
 */
enum mrd_geo_check_result {
    MRD_GEO_CHECK_NONE = 0,  /* no geo.database configured */
    MRD_GEO_CHECK_SAME,      /* unchanged (or a change already reported) */
    MRD_GEO_CHECK_RELOADED,  /* a new version is current; msg says which */
    MRD_GEO_CHECK_FAILED,    /* the file changed but does not open or validate: msg; old one serves */
    MRD_GEO_CHECK_MISSING,   /* the file is gone (reported once until it is back): msg; old one serves */
};

/* msg (NUL-terminated, for the error log) is set for RELOADED, FAILED and
 * MISSING. Main thread only. */
enum mrd_geo_check_result mrd_geo_db_check(struct mrd_geo *g, char *msg, size_t msglen);

/* what /v1/status and /metrics show about the open database */
struct mrd_geo_db_info {
    int open;              /* 0: no database configured (the rest is 0) */
    const char *path;      /* geo.database */
    uint64_t epoch;        /* process-wide sequence number of the version, > 0 */
    uint64_t build_epoch;  /* MMDB metadata build_epoch (seconds since 1970) */
    time_t loaded_at;      /* when this version was opened */
    char type[64];         /* MMDB metadata database_type, e.g. "GeoIP2-City" */
};
void mrd_geo_db_info(const struct mrd_geo *g, struct mrd_geo_db_info *out);

/* Epoch of the current database version, 0 without a database; changes when
 * mrd_geo_db_check swaps it, so that location caches know to reset. */
uint64_t mrd_geo_epoch(const struct mrd_geo *g);

/* a country's approximate centre (country_centroids.c) */
struct mrd_country_centroid {
    char code[3]; /* ISO 3166-1 alpha-2, upper case */
    double latitude, longitude;
};
/* The entry for a two-letter code (either case), or NULL. */
const struct mrd_country_centroid *mrd_country_centroid(const char *code);
/* the whole table, sorted by code */
const struct mrd_country_centroid *mrd_country_centroids(size_t *n);

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
 * The owner resets it whenever the geo table changes (a new generation) or
 * its database is replaced (mrd_geo_epoch changes).
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
