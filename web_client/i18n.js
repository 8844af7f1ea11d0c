// Bilingual UI strings (en / zh). The choice lives in localStorage so every page agrees.
const STORAGE_KEY = 'lc.lang';

const DICT = {
  en: {
    'app.name': 'livecoach',
    'nav.home': 'Home', 'nav.practice': 'Practice', 'nav.stream': 'Stream', 'nav.mentor': 'Mentor',
    'nav.sessions': 'Sessions', 'lang.label': 'Language',
    'home.title': 'Live-commerce sales training',
    'home.intro': 'Practise selling by voice to an AI customer, shadow a live streamer as a mentor, and review every session.',
    'home.practice': 'Practice with an AI customer (trainee)',
    'home.stream': 'Go live as a streamer (shadowed by a mentor)',
    'home.mentor': 'Mentor: watch, hear, tip and whisper',
    'home.sessions': 'Past sessions, transcripts and latency',
    'form.scenario': 'Scenario', 'form.name': 'Your name', 'form.room': 'Room',
    'btn.start': 'Start', 'btn.stop': 'Stop', 'btn.watch': 'Watch', 'btn.publish': 'Go live',
    'btn.send': 'Send', 'btn.ack': 'Got it', 'btn.dismiss': 'Dismiss', 'btn.whisper': 'Hold to whisper',
    'btn.whispering': 'Whispering…', 'btn.report': 'Printable report',
    'status.idle': 'Not connected', 'status.token': 'Getting a pass…', 'status.connecting': 'Connecting…',
    'status.joined': 'Joined, starting media…', 'status.negotiating': 'Setting up audio…',
    'status.connected': 'Connected', 'status.reconnecting': 'Reconnecting in {s}s (attempt {n})…',
    'status.ended': 'Ended', 'status.error': 'Stopped', 'status.rtt': 'RTT {ms} ms',
    'state.label': 'Now', 'state.none': '—', 'state.listening': 'Listening',
    'state.user_speaking': 'You are speaking', 'state.thinking': 'Thinking…', 'state.speaking': 'Speaking',
    'state.interrupted': 'Interrupted',
    'practice.title': 'Practice', 'practice.transcript': 'Conversation', 'practice.latency': 'Reply latency per turn',
    'practice.interruptions': 'Interruptions', 'practice.mic': 'Your mic', 'practice.customer': 'Customer’s voice',
    'practice.hint': 'Speak naturally. You can interrupt the customer at any time.',
    'practice.ended': 'Session ended.', 'practice.view': 'View this session',
    'col.turn': 'Turn', 'col.browser': 'Heard (browser) ms', 'col.server': 'Server ms', 'col.said': 'You said',
    'col.time': 'Started', 'col.user': 'User', 'col.room': 'Room', 'col.kind': 'Kind',
    'col.scenario': 'Scenario', 'col.turns': 'Turns', 'col.open': 'Open',
    'speaker.trainee': 'You', 'speaker.customer': 'Customer', 'speaker.streamer': 'Streamer', 'speaker.mentor': 'Mentor',
    'speaker.trainee.other': 'Trainee', 'speaker.viewer': 'Viewer', 'speaker.trainee.hearing': 'You (heard so far)',
    'interrupt.item': 'Turn {turn}: stopped after "{played}" ({ms} ms of audio dropped)',
    'interrupt.browser': 'reply stopped {ms} ms after you started talking (heard in browser)',
    'stream.title': 'Streamer', 'stream.preview': 'Your camera', 'stream.autoack': 'Acknowledge tips automatically',
    'stream.tips': 'Tips from your mentor', 'stream.whisper': 'Mentor whisper', 'stream.participants': 'In the room',
    'mentor.title': 'Mentor', 'mentor.live': 'Live view', 'mentor.quick': 'Quick tips', 'mentor.free': 'Write a tip…',
    'mentor.sent': 'Tips sent', 'mentor.alerts': 'Alerts', 'mentor.metrics': 'Live metrics',
    'mentor.audio': 'Streamer audio', 'mentor.ptt_hint': 'or hold the space bar',
    'tip.waiting': 'waiting for ack', 'tip.acked': 'acked in {ms} ms',
    'nav.progress': 'Progress', 'col.date': 'Date',
    'progress.title': 'Trainee progress', 'progress.trainee': 'Trainee', 'progress.split': 'Training date',
    'progress.clear': 'Clear date', 'progress.export': 'Export:', 'progress.export_sessions': 'Sessions CSV',
    'progress.export_metrics': 'Metrics CSV', 'progress.export_json': 'JSON',
    'progress.chart': 'Scores per session (0–100)', 'progress.trend': 'Trend per dimension',
    'progress.compare': 'Before / after the training',
    'progress.compare_hint': 'Pick the training date to compare the sessions before it with those on or after it.',
    'progress.dimension': 'Dimension', 'progress.before': 'Before (mean)', 'progress.after': 'On/after (mean)',
    'progress.delta': 'Change', 'progress.n': '{mean} ({n})', 'progress.no_compare': 'needs sessions on both sides',
    'progress.sessions': 'Sessions', 'progress.slope': '{v} points per session', 'progress.mean': 'mean {v}',
    'progress.few': 'needs 2+ sessions', 'progress.split_marker': 'training',
    'progress.empty_user': 'No finished sessions for {user} yet.',
    'progress.no_users': 'No sessions yet: finish a practice session first.',
    'progress.link': 'Progress:',
    'dim.knowledge': 'Knowledge', 'dim.skill': 'Skill', 'dim.response': 'Response', 'dim.composure': 'Composure',
    'dim.overall': 'Overall',
    'sessions.title': 'Past sessions', 'sessions.empty': 'No sessions yet.',
    'session.title': 'Session', 'session.chart': 'Latency per turn (ms)', 'session.transcript': 'Transcript',
    'session.turns': 'Turns', 'session.interruptions': 'Interruptions', 'session.none': 'None',
    'session.missing': 'No session id in the address.',
    'session.scores': 'Scores',
    'stage.endpoint': 'End of turn', 'stage.stt': 'Speech-to-text', 'stage.llm': 'LLM first token',
    'stage.tts': 'TTS first audio', 'stage.send': 'Send', 'stage.total': 'Total',
    'quick.slow': 'Slow down a little', 'quick.price': 'Mention the price and today’s deal now',
    'quick.question': 'Answer the viewer’s question first', 'quick.energy': 'More energy!',
    'quick.close': 'Time to close: ask for the order', 'quick.product': 'Show the product to the camera',
    'err.bad_token': 'Your access link is invalid. Ask for a new one.',
    'err.token_expired': 'Your access link has expired. Ask for a new one.',
    'err.room_full': 'This room is full (it already has a {role}).',
    'err.room_full_generic': 'This room is full.',
    'err.server_busy': 'The server is busy. Retrying shortly…',
    'err.unreachable': 'Cannot reach the server. Check your connection; retrying…',
    'err.connection_lost': 'Connection lost. Reconnecting…',
    'err.mic_denied': 'Microphone access was denied. Allow it in the browser’s site settings and reload.',
    'err.camera_denied': 'Camera access was denied; continuing with audio only.',
    'err.no_device': 'No microphone or camera was found.',
    'err.media': 'Could not start your microphone/camera: {detail}',
    'err.forbidden': 'You are not allowed to do that.',
    'err.timeout': 'The server did not answer in time; retrying…',
    'err.webrtc': 'Audio/video connection failed; reconnecting…',
    'err.no_webrtc': 'This browser does not support WebRTC.',
    'err.http': 'Server error: {detail}',
    'err.generic': 'Error: {detail}',
    'err.whisper_off': 'No microphone: whisper is unavailable, watching only.',
    // Live alerts and metrics: the server sends kind + parameters; numbers are formatted by the page.
    'alert.dead_air': 'Dead air: {silence_s} s of silence (limit {threshold_s} s). Keep talking or ask a question.',
    'alert.speech_rate_high': 'Speaking too fast: {rate} {unit} (limit {threshold}). Slow down.',
    'alert.speech_rate_low': 'Speaking too slowly: {rate} {unit} (minimum {threshold}). Pick up the pace.',
    'alert.unanswered_question': 'Question unanswered for {waited_s} s (limit {threshold_s} s): “{question}”',
    'alert.keyword_unused': 'Script keywords not used yet after {threshold_s} s: {keywords}',
    'alert.stream_fps_low': 'The stream stutters: {fps} fps (below {threshold}) for {for_s} s.',
    'alert.stream_loss_high': 'Packet loss {loss_pct} % (above {threshold} %) for {for_s} s.',
    'alert.other': 'Alert: {kind}', 'alert.text': '{text}',
    'severity.info': 'Note', 'severity.warning': 'Warning',
    'unit.wpm': 'words/min', 'unit.cpm': 'chars/min', 'unit.s': 's', 'unit.fps': 'fps', 'unit.kbps': 'kbit/s', 'unit.ms': 'ms',
    'metric.speech_rate': 'Speech rate', 'metric.speech_rate_target': 'target {min}–{max} {unit}',
    'metric.silence': 'Silence', 'metric.silence_limit': 'dead air after {s} s',
    'metric.keywords_used': 'Script keywords used', 'metric.keywords_unused': 'Not used yet',
    'metric.question_pending': 'Unanswered question', 'metric.alerts_fired': 'Alerts so far',
    'metric.waiting': 'waiting for speech…', 'metric.none': '—',
    'health.title': 'Stream health', 'health.fps': 'Frame rate', 'health.resolution': 'Resolution',
    'health.bitrate': 'Bitrate', 'health.loss': 'Packet loss', 'health.jitter': 'Jitter', 'health.freezes': 'Freezes',
    'health.fps_limit': 'alert below {v} fps', 'health.loss_limit': 'alert above {v} %',
    'mentor.empty': 'No streamer is live in room “{room}” yet. Waiting for them to go live…',
    'mentor.streamer_live': 'Watching {user}.',
    'mentor.stream_ended': 'The stream has ended.',
    'mentor.watch_first': 'Press Watch first: tips go to a live streamer.',
    'kind.practice': 'Practice', 'kind.shadow': 'Shadowed stream',
    'sessions.session_title': '{user} · {scenario} · {date}', 'sessions.live': 'live',
    'session.recording.practice': 'Recording (left: trainee, right: AI customer)',
    'session.recording.shadow': 'Recording (left: streamer, right: mentor (whisper))',
    'session.recording.shadow_av': 'Recording: the streamer’s camera with both voices (left: streamer, right: mentor (whisper))',
    'session.video': 'Streamer video', 'session.subject.trainee': 'Trainee', 'session.subject.streamer': 'Streamer',
    'home.progress': 'Scores over time and before/after training',
    'practice.you_state': 'You', 'practice.customer_state': 'Customer',
    'practice.new_session': 'The server restarted: a new session began. The previous one is saved under Sessions.',
    'practice.resumed': 'Reconnected to the same session.',
    'err.wrong_role': 'This link is for a {role}, not for the {page} page. Open it on the right page or ask for a {page} link.',
    'err.no_streamer': 'No streamer is live in this room.',
    'err.not_found': 'Not found (no such session or recording).',
    'err.not_joined': 'Not in the room yet; reconnecting…',
    'err.invalid_field': 'The server rejected a field: {detail}',
    'err.unknown_scenario': 'Unknown scenario: pick another one.',
    'err.scenarios_invalid': 'The scenario files on the server are invalid.',
    'err.bad_sdp': 'The audio/video offer was rejected.', 'err.invalid_state': 'The server was not ready for that; retrying…',
    'err.unknown_tip': 'That tip is no longer pending.', 'err.too_large': 'Message too large.',
    'err.bad_json': 'The server could not read the request.', 'err.not_object': 'The server could not read the request.',
    'err.already_joined': 'Already in the room.', 'err.unknown_type': 'The server did not understand the request.',
    'err.room_lost': 'The room was closed by the server; reconnecting…',
  },
  zh: {
    'app.name': 'livecoach 直播带货教练',
    'nav.home': '首页', 'nav.practice': '对练', 'nav.stream': '开播', 'nav.mentor': '导师',
    'nav.sessions': '记录', 'lang.label': '语言',
    'home.title': '直播带货销售训练',
    'home.intro': '与 AI 虚拟顾客语音对练，导师一对一旁听主播，每场训练都有完整记录。',
    'home.practice': '与 AI 顾客对练（学员）',
    'home.stream': '主播开播（导师旁听）',
    'home.mentor': '导师：观看、收听、提示、耳语',
    'home.sessions': '历史记录、文字稿与延迟',
    'form.scenario': '场景', 'form.name': '你的名字', 'form.room': '房间',
    'btn.start': '开始', 'btn.stop': '结束', 'btn.watch': '观看', 'btn.publish': '开播',
    'btn.send': '发送', 'btn.ack': '收到', 'btn.dismiss': '关闭', 'btn.whisper': '按住耳语',
    'btn.whispering': '耳语中…', 'btn.report': '打印版报告',
    'status.idle': '未连接', 'status.token': '获取通行证…', 'status.connecting': '连接中…',
    'status.joined': '已加入，正在启动媒体…', 'status.negotiating': '正在建立音频…',
    'status.connected': '已连接', 'status.reconnecting': '{s} 秒后重连（第 {n} 次）…',
    'status.ended': '已结束', 'status.error': '已停止', 'status.rtt': '往返 {ms} 毫秒',
    'state.label': '当前', 'state.none': '—', 'state.listening': '在听',
    'state.user_speaking': '你在说话', 'state.thinking': '思考中…', 'state.speaking': '正在说话',
    'state.interrupted': '被打断',
    'practice.title': '对练', 'practice.transcript': '对话', 'practice.latency': '每轮回复延迟',
    'practice.interruptions': '打断', 'practice.mic': '你的麦克风', 'practice.customer': '顾客声音',
    'practice.hint': '自然地说话，随时可以打断顾客。',
    'practice.ended': '本场已结束。', 'practice.view': '查看本场记录',
    'col.turn': '轮次', 'col.browser': '浏览器实测 毫秒', 'col.server': '服务器 毫秒', 'col.said': '你说的话',
    'col.time': '开始时间', 'col.user': '用户', 'col.room': '房间', 'col.kind': '类型',
    'col.scenario': '场景', 'col.turns': '轮数', 'col.open': '打开',
    'speaker.trainee': '你', 'speaker.customer': '顾客', 'speaker.streamer': '主播', 'speaker.mentor': '导师',
    'speaker.trainee.other': '学员', 'speaker.viewer': '观众', 'speaker.trainee.hearing': '你（识别中）',
    'interrupt.item': '第 {turn} 轮：在“{played}”之后停止（丢弃 {ms} 毫秒音频）',
    'interrupt.browser': '你开口后 {ms} 毫秒回复停止（浏览器实测）',
    'stream.title': '主播', 'stream.preview': '你的摄像头', 'stream.autoack': '自动确认提示',
    'stream.tips': '导师提示', 'stream.whisper': '导师耳语', 'stream.participants': '房间成员',
    'mentor.title': '导师', 'mentor.live': '直播画面', 'mentor.quick': '快捷提示', 'mentor.free': '输入提示…',
    'mentor.sent': '已发提示', 'mentor.alerts': '告警', 'mentor.metrics': '实时指标',
    'mentor.audio': '主播声音', 'mentor.ptt_hint': '或按住空格键',
    'tip.waiting': '等待确认', 'tip.acked': '{ms} 毫秒后确认',
    'nav.progress': '成长', 'col.date': '日期',
    'progress.title': '学员成长', 'progress.trainee': '学员', 'progress.split': '培训日期',
    'progress.clear': '清除日期', 'progress.export': '导出：', 'progress.export_sessions': '记录 CSV',
    'progress.export_metrics': '指标 CSV', 'progress.export_json': 'JSON',
    'progress.chart': '每场得分（0–100）', 'progress.trend': '各维度趋势',
    'progress.compare': '培训前后对比',
    'progress.compare_hint': '选择培训日期，对比该日期之前与当天及之后的训练。',
    'progress.dimension': '维度', 'progress.before': '培训前（均值）', 'progress.after': '培训后（均值）',
    'progress.delta': '变化', 'progress.n': '{mean}（{n} 场）', 'progress.no_compare': '日期前后都需要有记录',
    'progress.sessions': '训练记录', 'progress.slope': '每场 {v} 分', 'progress.mean': '均值 {v}',
    'progress.few': '至少需要 2 场', 'progress.split_marker': '培训',
    'progress.empty_user': '{user} 还没有完成的训练记录。',
    'progress.no_users': '还没有记录：请先完成一场对练。',
    'progress.link': '成长：',
    'dim.knowledge': '知识', 'dim.skill': '技巧', 'dim.response': '响应', 'dim.composure': '台风',
    'dim.overall': '综合',
    'sessions.title': '历史记录', 'sessions.empty': '还没有记录。',
    'session.title': '训练记录', 'session.chart': '每轮延迟（毫秒）', 'session.transcript': '文字稿',
    'session.turns': '轮次', 'session.interruptions': '打断', 'session.none': '无',
    'session.missing': '地址中缺少记录编号。',
    'session.scores': '评分',
    'stage.endpoint': '判断说完', 'stage.stt': '语音识别', 'stage.llm': '大模型首字',
    'stage.tts': '语音合成首包', 'stage.send': '发送', 'stage.total': '总计',
    'quick.slow': '语速放慢一点', 'quick.price': '现在报价格和今日优惠',
    'quick.question': '先回答观众的问题', 'quick.energy': '再热情一点！',
    'quick.close': '该逼单了：引导下单', 'quick.product': '把产品给镜头看',
    'err.bad_token': '访问链接无效，请重新获取。',
    'err.token_expired': '访问链接已过期，请重新获取。',
    'err.room_full': '房间已满（已经有{role}了）。',
    'err.room_full_generic': '房间已满。',
    'err.server_busy': '服务器繁忙，稍后自动重试…',
    'err.unreachable': '无法连接服务器，请检查网络；正在重试…',
    'err.connection_lost': '连接已断开，正在重连…',
    'err.mic_denied': '麦克风权限被拒绝。请在浏览器网站设置中允许后刷新。',
    'err.camera_denied': '摄像头权限被拒绝，仅使用音频继续。',
    'err.no_device': '没有找到麦克风或摄像头。',
    'err.media': '无法启动麦克风/摄像头：{detail}',
    'err.forbidden': '无权执行该操作。',
    'err.timeout': '服务器响应超时，正在重试…',
    'err.webrtc': '音视频连接失败，正在重连…',
    'err.no_webrtc': '此浏览器不支持 WebRTC。',
    'err.http': '服务器错误：{detail}',
    'err.generic': '错误：{detail}',
    'err.whisper_off': '没有麦克风：无法耳语，仅观看。',
    'alert.dead_air': '冷场 {silence_s} 秒（阈值 {threshold_s} 秒），请继续讲解或提问。',
    'alert.speech_rate_high': '语速过快：{rate} {unit}（上限 {threshold}），请放慢。',
    'alert.speech_rate_low': '语速过慢：{rate} {unit}（下限 {threshold}），请加快节奏。',
    'alert.unanswered_question': '问题已 {waited_s} 秒未回答（阈值 {threshold_s} 秒）：“{question}”',
    'alert.keyword_unused': '开播 {threshold_s} 秒仍未使用的话术关键词：{keywords}',
    'alert.stream_fps_low': '画面卡顿：{fps} 帧/秒（低于 {threshold}）已持续 {for_s} 秒。',
    'alert.stream_loss_high': '网络丢包 {loss_pct}%（高于 {threshold}%）已持续 {for_s} 秒。',
    'alert.other': '提醒：{kind}', 'alert.text': '{text}',
    'severity.info': '提示', 'severity.warning': '警告',
    'unit.wpm': '词/分钟', 'unit.cpm': '字/分钟', 'unit.s': '秒', 'unit.fps': '帧/秒', 'unit.kbps': '千比特/秒', 'unit.ms': '毫秒',
    'metric.speech_rate': '语速', 'metric.speech_rate_target': '目标 {min}–{max} {unit}',
    'metric.silence': '静默', 'metric.silence_limit': '超过 {s} 秒算冷场',
    'metric.keywords_used': '已用话术关键词', 'metric.keywords_unused': '尚未使用',
    'metric.question_pending': '待回答的问题', 'metric.alerts_fired': '已发提醒',
    'metric.waiting': '等待主播说话…', 'metric.none': '—',
    'health.title': '直播画面质量', 'health.fps': '帧率', 'health.resolution': '分辨率',
    'health.bitrate': '码率', 'health.loss': '丢包率', 'health.jitter': '抖动', 'health.freezes': '卡顿次数',
    'health.fps_limit': '低于 {v} 帧/秒告警', 'health.loss_limit': '高于 {v}% 告警',
    'mentor.empty': '房间“{room}”里还没有主播开播，等待开播…',
    'mentor.streamer_live': '正在观看 {user}。',
    'mentor.stream_ended': '直播已结束。',
    'mentor.watch_first': '请先点“观看”：提示只能发给正在直播的主播。',
    'kind.practice': '对练', 'kind.shadow': '旁听直播',
    'sessions.session_title': '{user} · {scenario} · {date}', 'sessions.live': '进行中',
    'session.recording.practice': '录音（左声道：学员，右声道：AI 顾客）',
    'session.recording.shadow': '录音（左声道：主播，右声道：导师（耳语））',
    'session.recording.shadow_av': '录像：主播画面与两路声音（左声道：主播，右声道：导师（耳语））',
    'session.video': '主播视频', 'session.subject.trainee': '学员', 'session.subject.streamer': '主播',
    'home.progress': '得分趋势与培训前后对比',
    'practice.you_state': '你', 'practice.customer_state': '顾客',
    'practice.new_session': '服务器已重启：开始了新的一场。上一场已保存在“记录”中。',
    'practice.resumed': '已重新连接到同一场。',
    'err.wrong_role': '此链接属于{role}，不能用于{page}页面。请在对应页面打开，或索取{page}链接。',
    'err.no_streamer': '此房间没有正在直播的主播。',
    'err.not_found': '未找到（没有这场记录或录音）。',
    'err.not_joined': '尚未进入房间，正在重连…',
    'err.invalid_field': '服务器拒绝了某个字段：{detail}',
    'err.unknown_scenario': '未知场景，请换一个。',
    'err.scenarios_invalid': '服务器上的场景文件有误。',
    'err.bad_sdp': '音视频请求被拒绝。', 'err.invalid_state': '服务器暂未就绪，正在重试…',
    'err.unknown_tip': '该提示已不在等待确认中。', 'err.too_large': '消息过大。',
    'err.bad_json': '服务器无法读取该请求。', 'err.not_object': '服务器无法读取该请求。',
    'err.already_joined': '已经在房间里了。', 'err.unknown_type': '服务器无法理解该请求。',
    'err.room_lost': '房间已被服务器关闭，正在重连…',
  },
};

const ROLE_NAMES = {
  en: { mentor: 'mentor', streamer: 'streamer', trainee: 'trainee', qa: 'QA' },
  zh: { mentor: '导师', streamer: '主播', trainee: '学员', qa: '质检' },
};
const PAGE_NAMES = {
  en: { mentor: 'mentor', streamer: 'streamer', trainee: 'practice', qa: 'QA' },
  zh: { mentor: '导师', streamer: '开播', trainee: '对练', qa: '质检' },
};

export function getLang() {
  let saved = null;
  try { saved = localStorage.getItem(STORAGE_KEY); } catch { /* storage disabled */ }
  if (saved === 'en' || saved === 'zh') return saved;
  return (navigator.language || 'en').toLowerCase().startsWith('zh') ? 'zh' : 'en';
}

export function setLang(lang) {
  if (lang !== 'en' && lang !== 'zh') return;
  try { localStorage.setItem(STORAGE_KEY, lang); } catch { /* storage disabled */ }
  applyI18n();
  document.dispatchEvent(new CustomEvent('langchange', { detail: { lang } }));
}

/** Translate ``key``; ``{name}`` placeholders are filled from ``vars``. */
export function t(key, vars = {}) {
  const lang = getLang();
  let text = DICT[lang][key] ?? DICT.en[key] ?? key;
  if (vars.role && ROLE_NAMES[lang][vars.role]) vars = { ...vars, role: ROLE_NAMES[lang][vars.role] };
  if (vars.page && PAGE_NAMES[lang][vars.page]) vars = { ...vars, page: PAGE_NAMES[lang][vars.page] };
  return text.replace(/\{(\w+)\}/g, (m, name) => (name in vars ? String(vars[name]) : m));
}

export function hasKey(key) { return key in DICT.en; }

/** Fill every [data-i18n], [data-i18n-placeholder] and [data-i18n-title] under ``root``. */
export function applyI18n(root = document) {
  document.documentElement.lang = getLang() === 'zh' ? 'zh-CN' : 'en';
  for (const el of root.querySelectorAll('[data-i18n]')) {
    const vars = el.dataset.i18nVars ? JSON.parse(el.dataset.i18nVars) : {};
    el.textContent = t(el.dataset.i18n, vars);
  }
  for (const el of root.querySelectorAll('[data-i18n-placeholder]')) el.placeholder = t(el.dataset.i18nPlaceholder);
  for (const el of root.querySelectorAll('[data-i18n-title]')) el.title = t(el.dataset.i18nTitle);
}

/** Format a number for the UI language (grouping, at most ``digits`` decimals). */
export function fmtNum(v, digits = 0) {
  if (v === null || v === undefined || Number.isNaN(Number(v))) return '—';
  return Number(v).toLocaleString(getLang() === 'zh' ? 'zh-CN' : 'en-US', { maximumFractionDigits: digits });
}

/** A date/time (epoch seconds or ISO) in the UI language, in the viewer's local time zone. */
export function fmtDate(ts, withTime = true) {
  const d = typeof ts === 'number' ? new Date(ts * 1000) : new Date(ts);
  if (ts === null || ts === undefined || Number.isNaN(d.getTime())) return '—';
  const locale = getLang() === 'zh' ? 'zh-CN' : 'en-GB';
  return withTime ? d.toLocaleString(locale, { dateStyle: 'medium', timeStyle: 'short' }) : d.toLocaleDateString(locale, { dateStyle: 'medium' });
}

export const DICTIONARY = DICT; // tests check both languages have the same keys
