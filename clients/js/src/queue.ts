import { PulsewireError } from './errors.js';

/** A FIFO with a fixed bound: `push` throws `queue_full` instead of growing or evicting. */
export class BoundedQueue<T> {
  private items: T[] = [];
  constructor(readonly capacity: number) {
    if (!(capacity >= 0)) throw new RangeError('capacity must be >= 0');
  }
  get size(): number {
    return this.items.length;
  }
  push(item: T): void {
    if (this.items.length >= this.capacity) {
      throw new PulsewireError('queue_full', `offline queue is full (${this.capacity} publications)`);
    }
    this.items.push(item);
  }
  /** Takes every item, oldest first, leaving the queue empty. */
  drain(): T[] {
    const out = this.items;
    this.items = [];
    return out;
  }
}
