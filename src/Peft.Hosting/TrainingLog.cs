using Microsoft.Extensions.Logging;

namespace Peft.Hosting;

/// <summary>The training service's structured log messages.</summary>
internal static partial class TrainingLog
{
    [LoggerMessage(1, LogLevel.Information, "Training {Model}: {TrainableParameters} trainable parameters, {TotalSteps} steps, output {OutputDirectory}, device {Device}")]
    internal static partial void Starting(ILogger logger, string model, long trainableParameters, int totalSteps, string outputDirectory, string device);

    [LoggerMessage(2, LogLevel.Information, "Resumed from checkpoint {CheckpointPath} at step {Step} (data position {DataPosition})")]
    internal static partial void Resumed(ILogger logger, string checkpointPath, int step, long dataPosition);

    [LoggerMessage(EventId = 3, Message = "step {Step}/{TotalSteps} loss {Loss:G6} lr {LearningRate:G4} grad_norm {GradNorm:G4} tokens/s {TokensPerSecond:F0} eta {Eta}")]
    internal static partial void Progress(ILogger logger, LogLevel level, int step, int totalSteps, double loss, double learningRate, double gradNorm, double tokensPerSecond, TimeSpan eta);

    [LoggerMessage(4, LogLevel.Warning, "step {Step}/{TotalSteps} skipped: loss {Loss}, gradient norm {GradNorm} (OnNonFiniteLoss = SkipStep)")]
    internal static partial void Skipped(ILogger logger, int step, int totalSteps, double loss, double gradNorm);

    [LoggerMessage(5, LogLevel.Information, "Checkpoint written: {CheckpointPath} (step {Step}, {ElapsedMs:F0} ms)")]
    internal static partial void CheckpointWritten(ILogger logger, string checkpointPath, int step, double elapsedMs);

    [LoggerMessage(6, LogLevel.Information, "Stop requested: finished step {Step} and wrote checkpoint {CheckpointPath}")]
    internal static partial void Stopped(ILogger logger, int step, string checkpointPath);

    [LoggerMessage(7, LogLevel.Information, "Training completed: {Step} steps, final loss {Loss:R}, adapters in {AdapterDirectory}")]
    internal static partial void Completed(ILogger logger, int step, double loss, string adapterDirectory);

    [LoggerMessage(9, LogLevel.Information, "Loss plot written: {PlotPath}; TensorBoard: tensorboard --logdir {TensorBoardDirectory}")]
    internal static partial void PlotWritten(ILogger logger, string plotPath, string tensorBoardDirectory);

    [LoggerMessage(10, LogLevel.Information, "Job {Job} queued ({Queued} waiting), output {OutputDirectory}")]
    internal static partial void JobQueued(ILogger logger, string job, int queued, string outputDirectory);

    [LoggerMessage(11, LogLevel.Information, "Job {Job} ended: {State} at step {Step}/{TotalSteps}")]
    internal static partial void JobEnded(ILogger logger, string job, TrainingRunState state, int step, int totalSteps);

    [LoggerMessage(12, LogLevel.Warning, "Could not write the loss plot or curves in {OutputDirectory}: {Message}")]
    internal static partial void CurvesFailed(ILogger logger, string outputDirectory, string message);

    [LoggerMessage(8, LogLevel.Critical, "Training failed: {Message}")]
    internal static partial void Failed(ILogger logger, Exception exception, string message);
}
