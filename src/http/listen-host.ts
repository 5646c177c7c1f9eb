// The address a listener named `localhost` binds. Go's net.Listen takes the name's IPv4 address
// (127.0.0.1); Node takes whichever the resolver answers first, ::1 on some hosts, and a scraper or agent
// pointed at 127.0.0.1 would be refused.
export function listenHost(host: string): string {
  return host === 'localhost' ? '127.0.0.1' : host;
}
