// `gatehouse start --workers N`: N processes (node:cluster) share the one listener, each with its
// own gateway: store connection, configuration snapshot, key ring and proxy caches. What one
// worker writes must reach the others' caches:
// - PostgreSQL: the store's own change feed (LISTEN/NOTIFY) already reaches every process.
// - SQLite: the in-process feed reaches only the writer, so each worker's feed also sends its
//   changes to the primary, which hands them to every other worker (ClusterChangeFeed below).
//   The change is announced after its commit, so a worker that rebuilds on it reads the new data.
import cluster, { type Worker } from 'node:cluster';
import type { Settings } from '../config/settings.ts';
import { openGateway } from '../gateway.ts';
import type { Logger } from '../logging.ts';
import { type Change, type ChangeFeed, type ChangeListener, InProcessChangeFeed } from '../store/changes.ts';
import { listenerTlsOptions } from '../tls/listener.ts';

/** The primary asks a worker to stop over IPC, not with a signal: under a process manager the
 * worker may get the same SIGTERM too, and a second signal would cut its drain short. */
const STOP_MESSAGE = { gatehouse: 'stop' } as const;

/** A worker's word that it now listens for STOP_MESSAGE: an IPC message that arrives before a
 * listener exists is dropped, so the primary holds a stop back until it hears this. */
const STOP_LISTENER_READY = { gatehouse: 'stop-listener-ready' } as const;

/** Resolves when the primary asks this worker to stop (never, outside a cluster worker). */
export function primaryAskedToStop(): Promise<void> {
  return new Promise((resolve) => {
    if (!cluster.isWorker) return;
    const onMessage = (message: unknown) => {
      if ((message as typeof STOP_MESSAGE | null)?.gatehouse !== STOP_MESSAGE.gatehouse) return;
      process.off('message', onMessage);
      resolve();
    };
    process.on('message', onMessage);
    process.send?.(STOP_LISTENER_READY);
  });
}

interface ChangesMessage {
  gatehouse: 'changes';
  changes: Change[];
}

function isChangesMessage(message: unknown): message is ChangesMessage {
  return (
    typeof message === 'object' &&
    message !== null &&
    (message as ChangesMessage).gatehouse === 'changes' &&
    Array.isArray((message as ChangesMessage).changes)
  );
}

/** A worker's change feed: local delivery plus a relay through the primary to the other workers. */
export class ClusterChangeFeed implements ChangeFeed {
  private readonly local = new InProcessChangeFeed();
  private readonly onMessage = (message: unknown) => {
    if (isChangesMessage(message)) void this.local.publish(message.changes);
  };

  constructor() {
    process.on('message', this.onMessage);
  }

  async publish(changes: readonly Change[]): Promise<void> {
    await this.local.publish(changes);
    process.send?.({ gatehouse: 'changes', changes: [...changes] } satisfies ChangesMessage);
  }

  subscribe(listener: ChangeListener): () => void {
    return this.local.subscribe(listener);
  }

  async close(): Promise<void> {
    process.off('message', this.onMessage);
    await this.local.close();
  }
}

/** The feed a worker opens its store with: null when the store's own feed reaches every process. */
export function workerChangeFeed(settings: Settings): ChangeFeed | undefined {
  return cluster.isWorker && settings.databaseUrl.startsWith('sqlite:') ? new ClusterChangeFeed() : undefined;
}

/**
 * The primary: prepares the database once (migrations, account, master key, first signing key,
 * which workers starting together would otherwise race for), forks the workers, relays changes,
 * replaces a worker that dies, and on `stop` asks every worker to finish and waits for them.
 */
export async function runPrimary(settings: Settings, logger: Logger, stop: Promise<void>): Promise<void> {
  // The workers read the TLS files; a bad one is reported here, once, not by workers dying and
  // being replaced forever.
  listenerTlsOptions(settings);
  const prepared = await openGateway(settings, logger, { maintenance: true });
  await prepared.close();
  let stopping = false;
  /** Per worker: resolves once it can hear a stop, or has exited. */
  const stoppable = new WeakMap<Worker, Promise<void>>();
  const fork = (): Worker => {
    const worker = cluster.fork();
    let canHearStop = () => {};
    stoppable.set(
      worker,
      new Promise((resolve) => {
        canHearStop = resolve;
      }),
    );
    worker.on('message', (message: unknown) => {
      if ((message as typeof STOP_LISTENER_READY | null)?.gatehouse === STOP_LISTENER_READY.gatehouse) {
        return canHearStop();
      }
      if (!isChangesMessage(message)) return;
      for (const other of Object.values(cluster.workers ?? {})) {
        if (other && other !== worker && other.isConnected()) other.send(message);
      }
    });
    worker.on('exit', (code, signal) => {
      canHearStop();
      if (stopping) return;
      logger.error({ worker: worker.process.pid, code, signal }, 'worker exited; starting another');
      fork();
    });
    return worker;
  };
  for (let i = 0; i < settings.workers; i++) fork();
  logger.info({ workers: settings.workers }, 'started workers');
  await stop;
  stopping = true;
  const workers = Object.values(cluster.workers ?? {}).filter((worker) => worker !== undefined);
  await Promise.all(
    workers.map(
      (worker) =>
        new Promise<void>((resolve) => {
          if (worker.isDead()) return resolve();
          worker.once('exit', () => resolve());
          // A worker stopped while still starting gets the stop once it can hear it.
          void stoppable.get(worker)?.then(() => {
            if (!worker.isDead() && worker.isConnected()) worker.send(STOP_MESSAGE);
          });
        }),
    ),
  );
}
