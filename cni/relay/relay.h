// Shared declarations of the weir-cni relay's translation units:
// weir-cni.c (main, agent exchange, output), json-scan.c (spans over the
// network configuration), excluded.c (validation of the excluded-namespace
// shortcut). Kept C99 + POSIX, statically linked (cni/build-plugin.mjs).
#ifndef WEIR_CNI_RELAY_H
#define WEIR_CNI_RELAY_H
#include <stdbool.h>
#include <stddef.h>

// ---- minimal JSON scanning (json-scan.c) ----------------------------------
typedef struct { const char *s, *end; } span_t;

typedef struct {
  bool valid;
  span_t cni_version, agent_socket, agent_timeout, exclude, prev_result;
} conf_t;

const char *ws(const char *p, const char *e);
const char *skip_string(const char *p, const char *e);
const char *skip_value(const char *p, const char *e, int depth);
bool key_is(span_t k, const char *name);
conf_t scan_conf(const char *s, size_t n);
char *plain_string(span_t v);
span_t object_get(span_t obj, const char *key);
bool span_is(span_t v, char c);
bool span_null(span_t v);

// ---- output and versions (weir-cni.c) ---------------------------------------
int cni_error(int code, const char *msg, const char *details);
bool supported(const char *v);

// ---- excluded-namespace shortcut (excluded.c) ------------------------------
int validate_excluded(const conf_t *c, const char *stdin_p, size_t stdin_n, bool is_check, const char *version);

#endif
