// `weir ca`: the mesh certificate authority (a small Deployment, same image).
import { Command, Option } from 'commander';
import { ConfigError } from '../../agent/config.js';
import { FieldError } from '../../common/errors.js';
import { parseDuration } from '../../common/duration.js';

/** Longest certificate lifetime a flag may name (Istio allows 90 days for workload certificates). */
const MAX_CERT_TTL_MS = 365 * 86_400_000;
import { startCa } from '../../ca/main.js';

function hostPort(v: string): { host: string; port: number } {
  const m = /^(.*):(\d+)$/.exec(v);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) throw new ConfigError('--listen', 'must be host:port', v);
  return { host: m[1].replace(/^\[|\]$/g, '') || '0.0.0.0', port };
}

const list = (v: string): string[] => v.split(',').map((s) => s.trim()).filter(Boolean);

export function registerCaCommand(program: Command): void {
  program
    .command('ca')
    .description('run the mesh CA: SPIFFE certificates for pods, issued only to the node agent of the pod\'s node')
    .addOption(new Option('--kubeconfig <path>', 'kubeconfig file; default in-cluster').env('KUBECONFIG'))
    .addOption(new Option('--namespace <ns>', 'where the CA Secrets live (cacerts, weir-ca-root)').env('POD_NAMESPACE').default('weir-system'))
    .addOption(new Option('--trust-domain <td>', 'SPIFFE trust domain').env('WEIR_TRUST_DOMAIN').default('cluster.local'))
    .addOption(new Option('--listen <host:port>', 'HTTPS listen address').env('WEIR_CA_LISTEN').default('0.0.0.0:15012'))
    .addOption(new Option('--dns-names <list>', 'names on the serving certificate; default weir-ca.<ns>.svc[.cluster.local]').env('WEIR_CA_DNS_NAMES'))
    .addOption(new Option('--agent-service-accounts <list>', 'ns/name of the node agents allowed to ask').env('WEIR_CA_AGENT_SERVICE_ACCOUNTS').default('weir-system/weir-agent'))
    .addOption(new Option('--cert-ttl <duration>', 'workload certificate lifetime').env('WEIR_CA_CERT_TTL').default('24h'))
    .addOption(new Option('--max-cert-ttl <duration>', 'the longest lifetime a request may ask for').env('WEIR_CA_MAX_CERT_TTL').default('48h'))
    .action(async (o: Record<string, string>) => {
      let cfg;
      try {
        const { host, port } = hostPort(o.listen);
        const dnsNames = o.dnsNames ? list(o.dnsNames) : [`weir-ca.${o.namespace}.svc`, `weir-ca.${o.namespace}.svc.cluster.local`];
        cfg = {
          kubeconfig: o.kubeconfig, namespace: o.namespace, trustDomain: o.trustDomain, host, port, dnsNames, ips: [],
          agentServiceAccounts: list(o.agentServiceAccounts),
          certTtlMs: parseDuration('--cert-ttl', o.certTtl, MAX_CERT_TTL_MS), maxCertTtlMs: parseDuration('--max-cert-ttl', o.maxCertTtl, MAX_CERT_TTL_MS),
        };
      } catch (e) {
        if (e instanceof ConfigError || e instanceof FieldError) { process.stderr.write(`weir ca: ${e.message}\n`); process.exit(2); }
        throw e;
      }
      const { server, logger } = await startCa(cfg);
      const stop = (): void => { logger.info('shutting down'); void server.close().then(() => process.exit(0)); };
      process.on('SIGTERM', stop);
      process.on('SIGINT', stop);
    });
}
