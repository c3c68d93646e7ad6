// Container images for the runtime tests, built locally (this machine cannot
// pull): a tiny pause image and an "app" image holding the host's node binary,
// weir's bundle and native addon, the shared libraries they load, and busybox
// for a shell and nc. Each image is written as an OCI image layout (oci-layout,
// index.json, content-addressed blobs) packed in a tar that
// `ctr images import` accepts, and cached under a directory keyed by a hash of
// the inputs so a CI run builds each image once.
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export const PAUSE_IMAGE = 'weir.local/pause:v1';
export const APP_IMAGE = 'weir.local/app:v1';
export const NGINX_IMAGE = 'weir.local/nginx:v1';

const REPO_ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..');
const DEFAULT_CACHE = path.join(os.tmpdir(), 'weir-we-image-cache');

/** One file of the image: where it comes from on the host, where it lands in the rootfs. */
interface RootfsFile { hostPath: string; imagePath: string; mode?: number }

export interface ImageSpec {
  ref: string;
  files: RootfsFile[];
  /** Symlinks inside the rootfs: imagePath → target. */
  symlinks?: Record<string, string>;
  /** Empty directories to create (e.g. /tmp, /proc mount points). */
  dirs?: string[];
  entrypoint: string[];
  env?: string[];
  workingDir?: string;
}

export interface BuiltImage { ref: string; tarPath: string; manifestDigest: string }

function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

function sha256File(file: string): string {
  const h = createHash('sha256');
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(1 << 20);
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
    }
  } finally { fs.closeSync(fd); }
  return h.digest('hex');
}

/** The shared libraries (and the dynamic loader) an ELF file needs, from ldd. Static binaries need none. */
export function sharedLibraries(elf: string): string[] {
  let out: string;
  try {
    out = execFileSync('ldd', [elf], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    // ldd exits non-zero for "not a dynamic executable": nothing to add.
    const stdout = String((err as { stdout?: unknown }).stdout ?? '');
    const stderr = String((err as { stderr?: unknown }).stderr ?? '');
    if (/not a dynamic executable/.test(stdout + stderr)) return [];
    throw new Error(`ldd ${elf} failed: ${stderr.trim()}`);
  }
  const libs: string[] = [];
  for (const line of out.split('\n')) {
    const m = line.match(/=>\s+(\/\S+)/) ?? line.match(/^\s*(\/\S+)\s+\(/);
    if (m) libs.push(m[1]);
  }
  return libs;
}

/** Files for each library at its own path, plus the real file behind a symlinked path. */
function libraryFiles(elfs: string[]): RootfsFile[] {
  const seen = new Set<string>();
  const files: RootfsFile[] = [];
  for (const elf of elfs) {
    for (const lib of sharedLibraries(elf)) {
      if (seen.has(lib)) continue;
      seen.add(lib);
      // Copy the resolved content to the path the loader asks for, so symlink
      // chains (libfoo.so.1 → libfoo.so.1.2.3) do not need reproducing.
      files.push({ hostPath: fs.realpathSync(lib), imagePath: lib });
    }
  }
  return files;
}

export function pauseImageSpec(): ImageSpec {
  return {
    ref: PAUSE_IMAGE,
    files: [{ hostPath: '/bin/busybox', imagePath: '/bin/busybox', mode: 0o755 }],
    symlinks: { '/bin/sh': 'busybox' },
    dirs: ['/tmp', '/proc', '/sys', '/dev', '/etc'],
    // PID 1 ignores signals it has no handler for, so trap TERM to exit at once;
    // `sleep & wait` lets the trap run while sleeping.
    entrypoint: ['/bin/sh', '-c', 'trap "exit 0" TERM INT; while :; do /bin/busybox sleep 3600 & wait $!; done'],
  };
}

/** The app image: node + weir bundle + native addon + libs + busybox. Requires `npm run build`. */
export function appImageSpec(): ImageSpec {
  const node = fs.realpathSync(process.execPath);
  const bundle = path.join(REPO_ROOT, 'dist', 'weir.mjs');
  const addon = path.join(REPO_ROOT, 'native', 'build', 'Release', 'weir_native.node');
  for (const [what, file] of [['weir bundle (npm run build)', bundle], ['native addon (npm run build:native)', addon]] as const) {
    if (!fs.existsSync(file)) throw new Error(`app image: missing ${what}: ${file}`);
  }
  const files: RootfsFile[] = [
    { hostPath: '/bin/busybox', imagePath: '/bin/busybox', mode: 0o755 },
    { hostPath: node, imagePath: '/usr/bin/node', mode: 0o755 },
    { hostPath: bundle, imagePath: '/weir/dist/weir.mjs' },
    { hostPath: addon, imagePath: '/weir/native/build/Release/weir_native.node', mode: 0o755 },
    { hostPath: path.join(REPO_ROOT, 'package.json'), imagePath: '/weir/package.json' },
    ...libraryFiles([node, addon]),
  ];
  const applets = ['sh', 'nc', 'sleep', 'cat', 'ls', 'echo', 'id', 'ip', 'wget', 'nslookup', 'ps', 'kill', 'env'];
  const symlinks: Record<string, string> = {};
  for (const a of applets) symlinks[`/bin/${a}`] = 'busybox';
  symlinks['/usr/local/bin/weir'] = '/weir/dist/weir.mjs';
  return {
    ref: APP_IMAGE,
    files,
    symlinks,
    dirs: ['/tmp', '/proc', '/sys', '/dev', '/etc', '/var/run/weir'],
    entrypoint: ['/bin/sh'],
    env: ['PATH=/usr/local/bin:/usr/bin:/bin', 'WEIR_NATIVE_ADDON=/weir/native/build/Release/weir_native.node'],
    workingDir: '/weir',
  };
}

/**
 * Debian's nginx as an image (the ingress case): the binary and the libraries
 * it links, plus the passwd/group entries it looks up at start (it resolves
 * its default user even when it never switches to it). Its configuration is
 * mounted at /etc/nginx/nginx.conf by the pod that runs it.
 */
export function nginxImageSpec(cacheDir = DEFAULT_CACHE): ImageSpec {
  const nginx = '/usr/sbin/nginx';
  if (!fs.existsSync(nginx)) throw new Error('nginx image: missing /usr/sbin/nginx (Debian package nginx, test/setup.sh)');
  fs.mkdirSync(cacheDir, { recursive: true });
  const passwd = path.join(cacheDir, 'nginx-passwd');
  const group = path.join(cacheDir, 'nginx-group');
  fs.writeFileSync(passwd, 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n');
  fs.writeFileSync(group, 'root:x:0:\nnogroup:x:65534:\n');
  return {
    ref: NGINX_IMAGE,
    files: [
      { hostPath: nginx, imagePath: nginx, mode: 0o755 },
      { hostPath: passwd, imagePath: '/etc/passwd' },
      { hostPath: group, imagePath: '/etc/group' },
      ...libraryFiles([nginx]),
    ],
    dirs: ['/tmp', '/proc', '/sys', '/dev', '/etc/nginx', '/var/log/nginx', '/var/lib/nginx', '/run'],
    entrypoint: [nginx, '-e', 'stderr', '-g', 'daemon off;'],
  };
}

/** Cache key: what goes into the image (paths, sizes, mtimes) and the spec itself. */
function specKey(spec: ImageSpec): string {
  const parts = spec.files.map((f) => {
    const st = fs.statSync(f.hostPath);
    return `${f.imagePath}<${f.hostPath}:${st.size}:${st.mtimeMs}:${f.mode ?? ''}`;
  });
  return sha256(JSON.stringify({ v: 1, parts, spec: { ...spec, files: undefined } })).slice(0, 24);
}

/**
 * Build (or take from the cache) the OCI archive for `spec`. The layer is an
 * uncompressed tar made with GNU tar in a reproducible way (sorted, zero
 * mtimes, root-owned), so the digest only depends on the content.
 */
export function buildImage(spec: ImageSpec, cacheDir = DEFAULT_CACHE): BuiltImage {
  fs.mkdirSync(cacheDir, { recursive: true });
  const key = specKey(spec);
  const safeName = spec.ref.replace(/[^a-zA-Z0-9.-]+/g, '_');
  const tarPath = path.join(cacheDir, `${safeName}-${key}.oci.tar`);
  const digestPath = `${tarPath}.digest`;
  if (fs.existsSync(tarPath) && fs.existsSync(digestPath)) {
    return { ref: spec.ref, tarPath, manifestDigest: fs.readFileSync(digestPath, 'utf8').trim() };
  }

  const work = fs.mkdtempSync(path.join(cacheDir, 'build-'));
  try {
    const rootfs = path.join(work, 'rootfs');
    fs.mkdirSync(rootfs);
    for (const d of spec.dirs ?? []) fs.mkdirSync(path.join(rootfs, d), { recursive: true });
    for (const f of spec.files) {
      const dest = path.join(rootfs, f.imagePath);
      fs.mkdirSync(path.dirname(dest), { recursive: true });
      fs.copyFileSync(f.hostPath, dest);
      fs.chmodSync(dest, f.mode ?? (fs.statSync(f.hostPath).mode & 0o777));
    }
    for (const [link, target] of Object.entries(spec.symlinks ?? {})) {
      const dest = path.join(rootfs, link);
      fs.mkdirSync(path.dirname(dest), { recursive: true });
      fs.symlinkSync(target, dest);
    }
    fs.chmodSync(path.join(rootfs), 0o755);
    if (spec.dirs?.includes('/tmp')) fs.chmodSync(path.join(rootfs, 'tmp'), 0o1777);

    const layout = path.join(work, 'layout');
    const blobs = path.join(layout, 'blobs', 'sha256');
    fs.mkdirSync(blobs, { recursive: true });
    const layerTmp = path.join(work, 'layer.tar');
    execFileSync('tar', ['--sort=name', '--mtime=@0', '--owner=0', '--group=0', '--numeric-owner',
      '--format=posix', '--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime',
      '-C', rootfs, '-cf', layerTmp, '.'], { stdio: ['ignore', 'ignore', 'pipe'] });
    const layerDigest = sha256File(layerTmp);
    const layerSize = fs.statSync(layerTmp).size;
    fs.renameSync(layerTmp, path.join(blobs, layerDigest));

    const config = {
      architecture: goArch(),
      os: 'linux',
      created: '1970-01-01T00:00:00Z',
      config: {
        Entrypoint: spec.entrypoint,
        Env: spec.env ?? ['PATH=/usr/bin:/bin'],
        WorkingDir: spec.workingDir ?? '/',
      },
      rootfs: { type: 'layers', diff_ids: [`sha256:${layerDigest}`] },
      history: [{ created: '1970-01-01T00:00:00Z', created_by: 'weir test/support/images.ts' }],
    };
    const configBlob = writeBlob(blobs, JSON.stringify(config));
    const manifest = {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${configBlob.digest}`, size: configBlob.size },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: `sha256:${layerDigest}`, size: layerSize }],
    };
    const manifestBlob = writeBlob(blobs, JSON.stringify(manifest));
    const tag = spec.ref.slice(spec.ref.lastIndexOf(':') + 1);
    const index = {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [{
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        digest: `sha256:${manifestBlob.digest}`,
        size: manifestBlob.size,
        platform: { architecture: goArch(), os: 'linux' },
        // containerd names the imported image from this annotation.
        annotations: { 'io.containerd.image.name': spec.ref, 'org.opencontainers.image.ref.name': tag },
      }],
    };
    fs.writeFileSync(path.join(layout, 'index.json'), JSON.stringify(index));
    fs.writeFileSync(path.join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));

    const partial = `${tarPath}.partial-${process.pid}`;
    execFileSync('tar', ['-C', layout, '-cf', partial, 'oci-layout', 'index.json', 'blobs'], { stdio: ['ignore', 'ignore', 'pipe'] });
    fs.renameSync(partial, tarPath);
    fs.writeFileSync(digestPath, `sha256:${manifestBlob.digest}\n`);
    pruneOlderBuilds(cacheDir, safeName, tarPath);
    return { ref: spec.ref, tarPath, manifestDigest: `sha256:${manifestBlob.digest}` };
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

/** Older archives of the same image (inputs changed since): ~100 MB each for the app image, so drop them. */
function pruneOlderBuilds(cacheDir: string, safeName: string, keep: string): void {
  for (const f of fs.readdirSync(cacheDir)) {
    const full = path.join(cacheDir, f);
    if (f.startsWith(`${safeName}-`) && full !== keep && full !== `${keep}.digest`) fs.rmSync(full, { force: true });
  }
}

function writeBlob(blobs: string, content: string): { digest: string; size: number } {
  const buf = Buffer.from(content);
  const digest = sha256(buf);
  fs.writeFileSync(path.join(blobs, digest), buf);
  return { digest, size: buf.length };
}

function goArch(): string {
  const map: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x' };
  const a = map[process.arch];
  if (!a) throw new Error(`images: unsupported host architecture ${process.arch}`);
  return a;
}
