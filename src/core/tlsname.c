/*
 * tlsname.c: the name an upstream TLS connection verifies, server_name
 * validation and failure-log pacing (see tlsname.h).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "meridian/tlsname.h"

static int
is_ip(const char *s)
{
    unsigned char buf[sizeof(struct in6_addr)];

    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

int
mrd_tls_peer_name(const char *address, const char *server_name, char *out, size_t outlen)
{
    const char *host = server_name, *end;
    size_t len;

    if (host != NULL) {
        len = strlen(host);
    } else {
        if (address == NULL)
            return -1;
        if (address[0] == '[') {
            host = address + 1;
            end = strchr(host, ']');
            if (end == NULL)
                return -1;
        } else {
            host = address;
            end = strrchr(address, ':');
            if (end == NULL)
                end = address + strlen(address);
        }
        len = (size_t)(end - host);
    }
    if (len == 0 || len >= outlen)
        return -1;
    memcpy(out, host, len);
    out[len] = '\0';
    return is_ip(out) ? 1 : 0;
}

int
mrd_tls_server_name_check(const char *s, const char **why)
{
    size_t len = strlen(s), label = 0;

    if (len == 0) {
        *why = "must not be empty";
        return -1;
    }
    if (is_ip(s))
        return 0;
    if (len > 253) {
        *why = "a DNS name has at most 253 characters";
        return -1;
    }
    for (const char *p = s;; p++) {
        if (*p == '.' || *p == '\0') {
            if (label == 0) {
                *why = *p == '\0' ? "must not end with a dot" : "has an empty label";
                return -1;
            }
            if (label > 63) {
                *why = "has a label longer than 63 characters";
                return -1;
            }
            if (p[-1] == '-') {
                *why = "has a label ending with '-'";
                return -1;
            }
            if (*p == '\0')
                return 0;
            label = 0;
            continue;
        }
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
              *p == '_')) {
            *why = "must be a DNS name (letters, digits, '-', '_' and dots) or an IP address";
            return -1;
        }
        if (label == 0 && *p == '-') {
            *why = "has a label starting with '-'";
            return -1;
        }
        label++;
    }
}

int
mrd_tls_log_due(uint64_t last_ms, uint64_t now_ms, uint64_t period_ms)
{
    return last_ms == 0 || now_ms < last_ms || now_ms - last_ms >= period_ms;
}
