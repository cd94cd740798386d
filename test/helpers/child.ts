import { type ChildProcess, type SpawnOptions, spawn } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { ADMIN_KEY } from './http.js';

export interface Child {
  proc: ChildProcess;
  /** Everything written so far. */
  stdout(): string;
  stderr(): string;
  /** Resolves with the exit code (or the signal's name) once the process has exited; never rejects. */
  exited: Promise<number | NodeJS.Signals>;
  /** Resolves with the first match of `pattern` in stdout; rejects on timeout or if the process exits first. */
  waitForStdout(pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray>;
  /** SIGKILLs the process if it is still running and waits for it to be gone. */
  kill(): Promise<void>;
}

/**
 * Spawns a process and keeps its output, so tests can wait for a line instead of sleeping, and
 * remembers it in `all` so an `afterAll` can kill whatever a failing test left running.
 */
export function spawnChild(
  command: string,
  args: string[],
  options: Omit<SpawnOptions, 'stdio'> & {
    /** 'pipe' keeps the child's stdin open for as long as this process lives (children that exit on EOF). */
    stdin?: 'ignore' | 'pipe';
  },
  all?: Set<Child>,
): Child {
  const { stdin = 'ignore', ...spawnOptions } = options;
  const proc = spawn(command, args, { ...spawnOptions, stdio: [stdin, 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const listeners = new Set<() => void>();
  proc.stdout?.setEncoding('utf8').on('data', (d: string) => {
    out += d;
    for (const l of listeners) l();
  });
  proc.stderr?.setEncoding('utf8').on('data', (d: string) => {
    err += d;
  });
  let exitedValue: number | NodeJS.Signals | undefined;
  const exited = new Promise<number | NodeJS.Signals>((resolve) => {
    // 'close' (not 'exit'): the output streams are complete when it fires.
    proc.on('close', (code, signal) => {
      exitedValue = code ?? signal ?? -1;
      for (const l of listeners) l();
      resolve(exitedValue);
    });
    proc.on('error', (e) => {
      err += `\nspawn error: ${e.message}`;
      exitedValue = -1;
      for (const l of listeners) l();
      resolve(-1);
    });
  });

  const child: Child = {
    proc,
    stdout: () => out,
    stderr: () => err,
    exited,
    waitForStdout: (pattern, timeoutMs) =>
      new Promise((resolve, reject) => {
        const done = (fn: () => void) => {
          clearTimeout(timer);
          listeners.delete(check);
          fn();
        };
        const check = () => {
          const m = out.match(pattern);
          if (m) return done(() => resolve(m));
          if (exitedValue !== undefined) {
            done(() => reject(new Error(`process exited (${exitedValue}) before printing ${pattern}\nstdout:\n${out}\nstderr:\n${err}`)));
          }
        };
        const timer = setTimeout(
          () => done(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${pattern}\nstdout:\n${out}\nstderr:\n${err}`))),
          timeoutMs,
        );
        listeners.add(check);
        check();
      }),
    kill: async () => {
      if (exitedValue === undefined && proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      await exited;
      all?.delete(child);
    },
  };
  all?.add(child);
  void exited.then(() => all?.delete(child));
  return child;
}

const ROOT = path.resolve(import.meta.dirname, '../..');

/** A gateway running the real entry point in a child process. */
export interface ChildGateway {
  child: Child;
  url: string;
}

/**
 * Starts src/main.ts (through tsx) on an ephemeral port with the admin key, plus `env`, and waits
 * for its banner; `timeoutMs` covers the first boot compiling the sources on a busy machine.
 */
export async function spawnGateway(
  env: Record<string, string | undefined>,
  opts: { children?: Set<Child>; timeoutMs?: number } = {},
): Promise<ChildGateway> {
  const child = spawnChild(
    process.execPath,
    ['--import', 'tsx', 'src/main.ts'],
    {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        HOME: process.env.HOME ?? os.tmpdir(),
        ADMIN_API_KEY: ADMIN_KEY,
        PORT: '0',
        HOST: '127.0.0.1',
        LOG_LEVEL: 'warn',
        ...env,
      },
    },
    opts.children,
  );
  try {
    const [, url] = (await child.waitForStdout(/listening on (http:\/\/\S+)/, opts.timeoutMs ?? 90_000)) as string[];
    return { child, url: url as string };
  } catch (err) {
    await child.kill();
    throw err;
  }
}

/** SIGTERMs a child and waits up to `graceMs` for it to exit, then SIGKILLs it (logging its stderr). */
export async function stopChild(child: Child, graceMs = 15_000): Promise<void> {
  child.proc.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const stopped = await Promise.race([
    child.exited.then(() => true),
    new Promise<false>((r) => {
      timer = setTimeout(() => r(false), graceMs);
    }),
  ]);
  clearTimeout(timer);
  if (!stopped) console.error('child did not stop on SIGTERM; killing it', child.stderr());
  await child.kill();
}
