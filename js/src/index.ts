export { FanoutClient } from './client';
export type { FanoutEvent, Member, Options, Reset, Stats, Status, WebSocketConstructor } from './client';
export { CloseCode, CloseError, ClosedError, FanoutError, PublishError } from './errors';
