// Every UI string of the console and the widget, in English and Russian. Components take a
// `Strings` table (from `strings(lang)`) and never spell text of their own.

export type Lang = 'en' | 'ru';
export const LANGS: readonly Lang[] = ['en', 'ru'];

const en = {
  langName: 'English',
  language: 'Language',

  // Shared
  loading: 'Loading…',
  error: (msg: string) => `Error: ${msg}`,
  networkError: 'The server cannot be reached',
  live: 'Live',
  connecting: 'Connecting…',
  reconnecting: 'Reconnecting…',
  reconnectingIn: (s: number) => `Reconnecting in ${s} s…`,
  justNow: 'just now',
  minutes: (n: number) => `${n} min`,
  hoursMinutes: (h: number, m: number) => (m ? `${h} h ${m} min` : `${h} h`),
  days: (n: number) => `${n} d`,

  // Console: sign-in
  consoleTitle: 'Inbox console',
  devLoginTitle: 'Developer sign-in',
  devLoginHint: 'Development only: the token comes from this server’s /dev/token.',
  noDevLogin: 'This server has no development sign-in. Open the console through your organisation’s sign-in page.',
  userId: 'User id',
  displayName: 'Display name',
  role: 'Role',
  roleManager: 'Manager',
  roleAdmin: 'Administrator',
  signIn: 'Sign in',
  signingIn: 'Signing in…',
  signInFailed: (status: number) => `Sign-in failed (HTTP ${status})`,
  signedInAs: (name: string, role: string) => `${name} (${role})`,
  signOut: 'Sign out',
  sessionExpired: 'Your session expired: sign in again.',
  forbidden: 'Your role may not use this view.',

  // Console: readiness
  availability: 'Availability',
  ready: 'Ready',
  readyHint: 'Take one more client',
  notReady: 'Not ready',
  notReadyHint: 'Take no new clients',
  readinessUnknown: 'Press Ready to take clients.',
  freeSlots: (n: number) => `Free slots: ${n}`,
  openTickets: (n: number) => `Open tickets: ${n}`,
  capacity: (n: number) => `Capacity: ${n}`,
  assignedNow: 'A waiting client was assigned to you.',

  // Console: ticket list
  myTickets: 'My tickets',
  noTickets: 'No tickets assigned to you.',
  unread: (n: number) => `${n} unread`,
  waiting: (d: string) => `waiting ${d}`,
  noMessagesYet: 'No messages yet',
  slaBreached: 'SLA breached',
  channelWeb: 'Web chat',
  channelTelegram: 'Telegram',
  channelEmail: 'Email',
  channelOther: 'Other channel',
  openTicketLabel: (name: string) => `Open the conversation with ${name}`,
  lastMessageFrom: (who: string, body: string) => `${who}: ${body}`,

  // Console: conversation
  conversation: 'Conversation',
  conversationWith: (name: string) => `Conversation with ${name}`,
  selectTicket: 'Select a ticket to see its conversation.',
  authorClient: 'Client',
  authorYou: 'You',
  authorManager: (name: string) => name || 'Manager',
  authorSystem: 'Service message',
  authorNote: 'Internal note',
  ticketClosed: 'This ticket is closed.',
  ticketTransferred: 'This ticket was handed to another manager.',
  replyLabel: 'Reply to the client',
  replyPlaceholder: 'Write a reply…',
  send: 'Send',
  sending: 'Sending…',
  notSent: 'Not sent. Send again: it will not be sent twice.',
  noteLabel: 'Internal note (only managers see it)',
  notePlaceholder: 'Write a note for colleagues…',
  addNote: 'Add note',
  resolve: 'Resolve',
  resolving: 'Resolving…',
  resolveLabel: 'Resolve the ticket and tell the client',
  deliveryFailed: (channel: string) => `A message could not be delivered over ${channel}.`,
  deliveryUnknown: (channel: string) => `A message may not have reached the client over ${channel}.`,
  resend: 'Send again',
  resent: 'Sent again.',
  closeNotice: 'Dismiss',

  // Console: admin
  backOffice: 'Back office',
  managers: 'Managers',
  tickets: 'Tickets',
  refresh: 'Refresh',
  colManager: 'Manager',
  colCapacity: 'Capacity',
  colReadySlots: 'Ready slots',
  colOpenTickets: 'Open tickets',
  colReadySince: 'Ready since',
  colClient: 'Client',
  colStatus: 'Status',
  colQueue: 'Queue',
  colPriority: 'Priority',
  colCreated: 'Created',
  colWaitingSince: 'Waiting since',
  statusFilter: 'Status',
  statusAll: 'All',
  statusOpen: 'Open',
  statusWaiting: 'Waiting',
  statusAssigned: 'Assigned',
  statusClosed: 'Closed',
  nothingHere: 'Nothing here.',

  // Widget
  widgetTitle: 'Chat with the bank',
  loadingOlder: 'Loading earlier messages…',
  startOfChat: 'Start of the conversation',
  emptyChat: 'Write to us: a manager will answer here.',
  messageLabel: 'Your message',
  messagePlaceholder: 'Write a message…',
  stateQueued: 'Waiting for the connection…',
  stateSending: 'Sending…',
  stateSent: 'Sent',
  stateDelivered: 'Delivered',
  stateFailed: (msg: string) => `Not sent: ${msg}`,
  discard: 'Remove',
  offline: 'You are offline: your messages will be sent when the connection is back.',
  widgetSessionExpired: 'Your session expired. Reload the page to go on.',
  blockedLabel: 'Security warning',
  you: 'You',
  bank: 'Bank',
  managerJoined: (name: string) => `${name} joined the chat`,
  chatClosed: 'The conversation was closed.',
  messagesLog: 'Messages',
};

export type Strings = typeof en;

const ru: Strings = {
  langName: 'Русский',
  language: 'Язык',

  loading: 'Загрузка…',
  error: (msg) => `Ошибка: ${msg}`,
  networkError: 'Сервер недоступен',
  live: 'На связи',
  connecting: 'Подключение…',
  reconnecting: 'Переподключение…',
  reconnectingIn: (s) => `Переподключение через ${s} с…`,
  justNow: 'только что',
  minutes: (n) => `${n} мин`,
  hoursMinutes: (h, m) => (m ? `${h} ч ${m} мин` : `${h} ч`),
  days: (n) => `${n} дн`,

  consoleTitle: 'Консоль обращений',
  devLoginTitle: 'Вход для разработки',
  devLoginHint: 'Только для разработки: токен выдаёт /dev/token этого сервера.',
  noDevLogin: 'На этом сервере нет входа для разработки. Откройте консоль через страницу входа вашей организации.',
  userId: 'Идентификатор',
  displayName: 'Имя',
  role: 'Роль',
  roleManager: 'Менеджер',
  roleAdmin: 'Администратор',
  signIn: 'Войти',
  signingIn: 'Вход…',
  signInFailed: (status) => `Не удалось войти (HTTP ${status})`,
  signedInAs: (name, role) => `${name} (${role})`,
  signOut: 'Выйти',
  sessionExpired: 'Сессия истекла: войдите снова.',
  forbidden: 'Вашей роли этот раздел недоступен.',

  availability: 'Готовность',
  ready: 'Готов',
  readyHint: 'Взять ещё одного клиента',
  notReady: 'Не готов',
  notReadyHint: 'Не брать новых клиентов',
  readinessUnknown: 'Нажмите «Готов», чтобы принимать клиентов.',
  freeSlots: (n) => `Свободных мест: ${n}`,
  openTickets: (n) => `Открытых обращений: ${n}`,
  capacity: (n) => `Вместимость: ${n}`,
  assignedNow: 'Вам назначен ожидавший клиент.',

  myTickets: 'Мои обращения',
  noTickets: 'Вам не назначено ни одного обращения.',
  unread: (n) => `непрочитанных: ${n}`,
  waiting: (d) => `ждёт ${d}`,
  noMessagesYet: 'Сообщений пока нет',
  slaBreached: 'SLA нарушен',
  channelWeb: 'Веб-чат',
  channelTelegram: 'Telegram',
  channelEmail: 'Почта',
  channelOther: 'Другой канал',
  openTicketLabel: (name) => `Открыть переписку с клиентом ${name}`,
  lastMessageFrom: (who, body) => `${who}: ${body}`,

  conversation: 'Переписка',
  conversationWith: (name) => `Переписка с клиентом ${name}`,
  selectTicket: 'Выберите обращение, чтобы увидеть переписку.',
  authorClient: 'Клиент',
  authorYou: 'Вы',
  authorManager: (name) => name || 'Менеджер',
  authorSystem: 'Служебное сообщение',
  authorNote: 'Внутренняя заметка',
  ticketClosed: 'Обращение закрыто.',
  ticketTransferred: 'Обращение передано другому менеджеру.',
  replyLabel: 'Ответ клиенту',
  replyPlaceholder: 'Напишите ответ…',
  send: 'Отправить',
  sending: 'Отправка…',
  notSent: 'Не отправлено. Отправьте снова: дважды не уйдёт.',
  noteLabel: 'Внутренняя заметка (видят только менеджеры)',
  notePlaceholder: 'Заметка для коллег…',
  addNote: 'Добавить заметку',
  resolve: 'Решено',
  resolving: 'Закрытие…',
  resolveLabel: 'Закрыть обращение и сообщить клиенту',
  deliveryFailed: (channel) => `Сообщение не удалось доставить через ${channel}.`,
  deliveryUnknown: (channel) => `Сообщение могло не дойти до клиента через ${channel}.`,
  resend: 'Отправить снова',
  resent: 'Отправлено снова.',
  closeNotice: 'Скрыть',

  backOffice: 'Бэк-офис',
  managers: 'Менеджеры',
  tickets: 'Обращения',
  refresh: 'Обновить',
  colManager: 'Менеджер',
  colCapacity: 'Вместимость',
  colReadySlots: 'Свободно',
  colOpenTickets: 'Открыто',
  colReadySince: 'Готов с',
  colClient: 'Клиент',
  colStatus: 'Статус',
  colQueue: 'Очередь',
  colPriority: 'Приоритет',
  colCreated: 'Создано',
  colWaitingSince: 'Ждёт с',
  statusFilter: 'Статус',
  statusAll: 'Все',
  statusOpen: 'Открыто',
  statusWaiting: 'Ожидает',
  statusAssigned: 'Назначено',
  statusClosed: 'Закрыто',
  nothingHere: 'Здесь пусто.',

  widgetTitle: 'Чат с банком',
  loadingOlder: 'Загружаем ранние сообщения…',
  startOfChat: 'Начало переписки',
  emptyChat: 'Напишите нам: менеджер ответит здесь.',
  messageLabel: 'Ваше сообщение',
  messagePlaceholder: 'Напишите сообщение…',
  stateQueued: 'Ждём связи…',
  stateSending: 'Отправка…',
  stateSent: 'Отправлено',
  stateDelivered: 'Доставлено',
  stateFailed: (msg) => `Не отправлено: ${msg}`,
  discard: 'Удалить',
  offline: 'Нет связи: сообщения уйдут, когда она появится.',
  widgetSessionExpired: 'Сессия истекла. Обновите страницу, чтобы продолжить.',
  blockedLabel: 'Предупреждение безопасности',
  you: 'Вы',
  bank: 'Банк',
  managerJoined: (name) => `${name} подключился к чату`,
  chatClosed: 'Переписка закрыта.',
  messagesLog: 'Сообщения',
};

const TABLES: Record<Lang, Strings> = { en, ru };

export function strings(lang: Lang): Strings {
  return TABLES[lang];
}

/** `ru` for a Russian browser, `en` otherwise; `wanted` (e.g. the widget's `lang`) wins if known. */
export function detectLang(wanted?: string | null): Lang {
  const pick = (tag: string | null | undefined): Lang | undefined => {
    const base = (tag || '').toLowerCase().split('-')[0];
    return (LANGS as readonly string[]).includes(base) ? (base as Lang) : undefined;
  };
  const fromWanted = pick(wanted);
  if (fromWanted) return fromWanted;
  const nav = typeof navigator !== 'undefined' ? navigator : undefined;
  for (const tag of nav?.languages ?? [nav?.language ?? '']) {
    const l = pick(tag);
    if (l) return l;
  }
  return 'en';
}

/** "5 min", "2 h 10 min", "3 d": a waiting time. */
export function duration(t: Strings, ms: number): string {
  const min = Math.floor(Math.max(0, ms) / 60_000);
  if (min < 1) return t.justNow;
  if (min < 60) return t.minutes(min);
  const h = Math.floor(min / 60);
  if (h < 48) return t.hoursMinutes(h, min % 60);
  return t.days(Math.floor(h / 24));
}

export function formatTime(lang: Lang, at: number): string {
  const d = new Date(at);
  const sameDay = new Date().toDateString() === d.toDateString();
  return new Intl.DateTimeFormat(lang, sameDay
    ? { hour: '2-digit', minute: '2-digit' }
    : { day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit' }).format(d);
}
