// What the excluded-namespace shortcut validates before it echoes prevResult
// without asking the agent: same codes and field names as the agent path
// (src/cni/conf.ts, src/cni/spec.ts), so a pod's conf is judged the same
// whether or not its namespace is excluded.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "relay.h"

// a.b.c.d/n or x:y::z/n, as src/redirect/addr.ts parseCidr (prefix required).
static bool strict_cidr(const char *s) {
  const char *slash = strchr(s, '/');
  if (!slash || slash == s) return false;
  const char *pre = slash + 1;
  size_t pn = strlen(pre);
  if (pn < 1 || pn > 3 || (pn > 1 && pre[0] == '0')) return false;
  for (size_t i = 0; i < pn; i++) if (!isdigit((unsigned char)pre[i])) return false;
  int prefix = atoi(pre);
  char addr[64];
  size_t an = (size_t)(slash - s);
  if (an >= sizeof addr) return false;
  memcpy(addr, s, an); addr[an] = 0;
  unsigned char bin[16];
  if (inet_pton(AF_INET, addr, bin) == 1) return prefix <= 32;
  if (inet_pton(AF_INET6, addr, bin) == 1) return prefix <= 128;
  return false;
}

static bool container_id_ok(const char *id) {
  if (!isalnum((unsigned char)id[0])) return false;
  for (const char *p = id; *p; p++) if (!isalnum((unsigned char)*p) && *p != '_' && *p != '.' && *p != '-') return false;
  return true;
}

// Returns 0 when the excluded pod's request may be answered, else prints the error and returns 1.
int validate_excluded(const conf_t *c, const char *stdin_p, size_t stdin_n, bool is_check, const char *version) {
  const char *id = getenv("CNI_CONTAINERID"), *ifname = getenv("CNI_IFNAME"), *netns = getenv("CNI_NETNS");
  if (!id || !*id) return cni_error(4, "CNI_CONTAINERID: missing", NULL);
  if (!container_id_ok(id)) return cni_error(4, "CNI_CONTAINERID: must be alphanumeric with _ . -", id);
  if (!ifname || !*ifname) return cni_error(4, "CNI_IFNAME: missing", NULL);
  if (!netns || !*netns) return cni_error(4, "CNI_NETNS: missing", NULL);
  if (netns[0] != '/') return cni_error(4, "CNI_NETNS: must be an absolute path", netns);
  if (!c->cni_version.s) return cni_error(7, "stdin.cniVersion: missing", NULL);
  if (!supported(version)) return cni_error(1, "stdin.cniVersion: not supported by weir-cni", "supported: 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0");
  span_t whole = {stdin_p, stdin_p + stdin_n};
  span_t name = object_get(whole, "name");
  if (!span_is(name, '"') || name.end - name.s < 3) return cni_error(7, "stdin.name: must be a non-empty string", NULL);
  span_t prev = c->prev_result;
  bool has_prev = prev.s && !span_null(prev);
  if (has_prev && !span_is(prev, '{')) return cni_error(7, "stdin.prevResult: must be an object", NULL);
  if (is_check) {
    if (!strcmp(version, "0.3.0") || !strcmp(version, "0.3.1")) return cni_error(1, "stdin.cniVersion: CHECK needs 0.4.0 or later", version);
    if (!has_prev) return cni_error(7, "stdin.prevResult: CHECK needs the previous result", NULL);
  }
  if (!has_prev) return 0;
  span_t ips = object_get(prev, "ips");
  if (!ips.s) return 0;
  if (!span_is(ips, '[')) return cni_error(7, "stdin.prevResult.ips: must be a list", NULL);
  const char *p = ws(ips.s + 1, ips.end), *e = ips.end;
  for (int i = 0; p < e && *p != ']'; i++) {
    span_t item = {p, skip_value(p, e, 0)};
    if (!item.end) break;
    char field[192], *addr = NULL;
    if (!span_is(item, '{')) {
      snprintf(field, sizeof field, "stdin.prevResult.ips[%d]: must be an object with an address", i);
      return cni_error(4, field, NULL);
    }
    addr = plain_string(object_get(item, "address"));
    if (!addr || !strict_cidr(addr)) {
      snprintf(field, sizeof field, "stdin.prevResult.ips[%d].address: expected an IPv4 or IPv6 address in CIDR notation (a.b.c.d/n or x:y::z/n)", i);
      int r = cni_error(4, field, addr);
      free(addr);
      return r;
    }
    free(addr);
    p = ws(item.end, e);
    if (p < e && *p == ',') p = ws(p + 1, e);
  }
  return 0;
}
