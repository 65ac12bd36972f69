/*
 * addr.h: IP addresses, "host:port" socket addresses and CIDR prefixes.
 * Pure: parsing and matching only, no DNS and no sockets. IPv4-mapped IPv6
 * addresses (::ffff:a.b.c.d) are normalised to IPv4 so that one CIDR list
 * matches a client whichever family its socket reports.
 */
#ifndef MERIDIAN_ADDR_H
#define MERIDIAN_ADDR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define MRD_IP_STRLEN 46 /* INET6_ADDRSTRLEN */

struct mrd_ip {
    int family;        /* AF_INET or AF_INET6 */
    uint8_t bytes[16]; /* network order; IPv4 uses the first 4 */
};

struct mrd_cidr {
    struct mrd_ip ip; /* host bits beyond prefix are zero */
    unsigned prefix;  /* 0..32 for IPv4, 0..128 for IPv6 */
};

/* Parse an IPv4 or IPv6 literal of exactly len bytes (no brackets, no port).
 * Returns 0, or -1 when it is not an address. */
int mrd_ip_parse(const char *s, size_t len, struct mrd_ip *ip);

/* Parse "a.b.c.d:port" or "[v6]:port" (port 1..65535, IP literals only).
 * Returns 0 and fills ss/sslen, or -1 with *err a static message. */
int mrd_sockaddr_parse(const char *s, struct sockaddr_storage *ss, socklen_t *sslen, const char **err);

/* Parse "addr/prefix" or a bare address (a host prefix). Host bits set beyond
 * the prefix are an error ("10.1.2.3/16" is rejected, as by most tools that
 * validate configuration). Returns 0 or -1 with *err. */
int mrd_cidr_parse(const char *s, struct mrd_cidr *c, const char **err);

/* 1 when ip is inside c (families must agree after v4-mapped normalisation). */
int mrd_cidr_match(const struct mrd_cidr *c, const struct mrd_ip *ip);

/* Address of a socket (AF_INET / AF_INET6; v4-mapped normalised). Returns 0 or -1. */
int mrd_ip_from_sockaddr(const struct sockaddr *sa, struct mrd_ip *ip);

/* Text form of ip into buf (at least MRD_IP_STRLEN bytes). Returns length. */
size_t mrd_ip_format(const struct mrd_ip *ip, char *buf, size_t len);

/* "ip:port" / "[ip]:port" text of a socket address. Returns length. */
size_t mrd_sockaddr_format(const struct sockaddr *sa, char *buf, size_t len);

#endif
