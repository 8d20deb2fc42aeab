import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Store } from '../../store/store.js';
import type { Access, Auth, Principal } from '../auth.js';
import type { EventStream } from '../sse.js';
import type { BeatWriter } from '../beats.js';

/** What the routes share: the one store connection, authentication, the event stream, the clock. */
export interface App {
  store: Store;
  /** Heartbeats of existing agents, committed together (see BeatWriter). */
  beats: BeatWriter;
  auth: Auth;
  stream: EventStream;
  dbPath: string;
  /** Where a restarted agent's NAME.log goes (the CLI's log directory). */
  logDir: string;
  /** As root, act even though others may write the database (restart's --allow-shared-db). */
  allowSharedDb: boolean;
  now(): number;
}

export interface RouteContext {
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
  /** The path's captured segments, percent-decoded. */
  params: string[];
  /** Who asked (absent on public routes). */
  principal: Principal | undefined;
  app: App;
}

/** One route: which requests it takes, who may call it, and a thin handler (parse and validate, call core, render). */
export interface Route {
  methods: readonly string[];
  path: RegExp;
  access: Access;
  /** For pings: the key is in the path, not in a header. */
  pingKey?: (params: string[]) => string;
  /** A dashboard page: a browser without a session gets the login hint (HTML) instead of a plain 401. */
  page?: boolean;
  /** Badges: the token may also come as `?token=` (an `<img>` sends no Authorization header). */
  queryToken?: boolean;
  /** The agent the request acts for, checked against an agent token's pattern before the handler runs. */
  agent?: (params: string[]) => string;
  handle(ctx: RouteContext): void | Promise<void>;
}
