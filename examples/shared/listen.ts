import type http from 'node:http';
import type { AddressInfo } from 'node:net';

/** Listens on host:port (port 0: any free one); resolves with the bound `host:port`. */
export function listenOn(server: http.Server, port: number, host = '127.0.0.1'): Promise<string> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      const address = server.address() as AddressInfo;
      resolve(`${address.address}:${address.port}`);
    });
  });
}

/** Stops accepting and closes every connection, idle or not (these servers hold no long work). */
export function closeServer(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
