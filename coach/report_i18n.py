"""Words of the printable report, in each language (the page is printed in one language)."""

from __future__ import annotations

_EN = {
    "title": "Session report", "trainee": "Trainee", "streamer": "Streamer", "customer": "Customer",
    "mentor": "Mentor", "viewer": "Viewer", "scenario": "Scenario", "date": "Date", "duration": "Duration",
    "kind": "Kind", "kind.practice": "Practice with the AI customer", "kind.shadow": "Shadowed live stream",
    "recording": "Recording", "recording.practice": "left: trainee, right: AI customer",
    "recording.shadow": "left: streamer, right: mentor (whisper)", "video": "Video", "download": "download",
    "overall": "Overall", "knowledge": "Knowledge", "skill": "Skill", "response": "Response", "composure": "Composure",
    "metrics": "Metrics", "talk": "talk", "talk_ratio": "Talk ratio", "speech_rate": "Speech rate",
    "pauses": "Pauses (≥0.3 s)", "dead_air": "Dead air", "mean": "mean", "longest": "longest", "max": "max",
    "questions": "Questions", "unanswered": "unanswered", "response_time": "Response time", "fillers": "Fillers",
    "keywords": "Script keywords", "unused": "unused", "interruptions": "Interruptions", "made": "made",
    "suffered": "suffered", "false": "false", "latency": "AI reply latency", "per_turn": "Per-turn latency",
    "no_turns": "No turns.", "transcript": "Transcript", "interrupted": "interrupted", "question": "question",
    "false_interruption": "false interruption", "trainee_interrupted": "trainee interrupted the customer",
    "long_pause": "long pause", "alert": "alert", "tip": "mentor tip", "acked": "acked in {ms} ms",
    "whisper": "mentor whispered", "health": "Stream health", "fps": "fps", "fps_mean": "mean frame rate",
    "fps_min": "lowest", "loss_max": "worst packet loss", "freezes": "freezes", "resolution": "resolution",
    "limit": "limit", "s": "s", "ms": "ms", "wpm": "words/min", "cpm": "chars/min", "tips": "Tips and whispers",
    "none": "None",
}
_ZH = {
    "title": "训练报告", "trainee": "学员", "streamer": "主播", "customer": "顾客", "mentor": "导师", "viewer": "观众",
    "scenario": "场景", "date": "日期", "duration": "时长", "kind": "类型", "kind.practice": "AI 顾客对练",
    "kind.shadow": "导师旁听直播", "recording": "录音", "recording.practice": "左声道：学员，右声道：AI 顾客",
    "recording.shadow": "左声道：主播，右声道：导师（耳语）", "video": "视频", "download": "下载",
    "overall": "总分", "knowledge": "知识", "skill": "技巧", "response": "响应", "composure": "台风",
    "metrics": "指标", "talk": "说话", "talk_ratio": "说话占比", "speech_rate": "语速", "pauses": "停顿（≥0.3 秒）",
    "dead_air": "冷场", "mean": "平均", "longest": "最长", "max": "最长", "questions": "提问", "unanswered": "未回答",
    "response_time": "响应时间", "fillers": "口头禅", "keywords": "话术关键词", "unused": "未用",
    "interruptions": "打断",
    "made": "打断对方", "suffered": "被打断", "false": "误打断", "latency": "AI 回复延迟", "per_turn": "每轮延迟",
    "no_turns": "无数据。", "transcript": "对话记录", "interrupted": "被打断", "question": "提问",
    "false_interruption": "误打断", "trainee_interrupted": "学员打断顾客", "long_pause": "长停顿", "alert": "提醒",
    "tip": "导师提示", "acked": "{ms} 毫秒后确认", "whisper": "导师耳语", "health": "直播画面质量", "fps": "帧/秒",
    "fps_mean": "平均帧率", "fps_min": "最低", "loss_max": "最高丢包", "freezes": "卡顿次数", "resolution": "分辨率",
    "limit": "阈值", "s": "秒", "ms": "毫秒", "wpm": "词/分钟", "cpm": "字/分钟", "tips": "提示与耳语", "none": "无",
}
LABELS = {"en": _EN, "zh": _ZH}
assert set(_EN) == set(_ZH), set(_EN) ^ set(_ZH)


def labels(language: str) -> dict[str, str]:
    return LABELS["zh" if language.startswith("zh") else "en"]
