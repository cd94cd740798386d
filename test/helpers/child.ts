import { type ChildProcess, type SpawnOptions, spawn } from 'node:child_process';

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
