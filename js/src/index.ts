export { FanoutClient } from './client';
export type { FanoutEvent, Member, Options, Reset, Snapshot, Stats, Status, WebSocketConstructor } from './client';
export { CloseCode, CloseError, ClosedError, FanoutError, PublishError } from './errors';
