"""A user's own RLlib callbacks class: logs how often an episode reached the corridor's end."""

from ray.rllib.callbacks.callbacks import RLlibCallback


class GoalRate(RLlibCallback):
    def on_episode_end(self, *, episode, metrics_logger, **kwargs):
        metrics_logger.log_value("goal_reached", float(episode.get_return() > 0), reduce="mean")
