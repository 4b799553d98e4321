using System.Diagnostics.Metrics;

namespace Peft.Hosting;

/// <summary>
/// The training service's instruments, on the meter <see cref="MeterName"/> (read them with dotnet-counters,
/// OpenTelemetry or a <see cref="MeterListener"/>).
/// </summary>
public sealed class PeftTrainingMetrics : IDisposable
{
    /// <summary>The meter's name.</summary>
    public const string MeterName = "Peft.Training";

    private readonly Meter _meter;
    private readonly bool _ownsMeter;

    /// <summary>Creates the instruments on a meter from <paramref name="meterFactory"/>, or on an own meter when it is null.</summary>
    /// <param name="meterFactory">The host's meter factory (registered by the default host builders).</param>
    public PeftTrainingMetrics(IMeterFactory? meterFactory = null)
    {
        _ownsMeter = meterFactory is null;
        _meter = meterFactory?.Create(MeterName) ?? new Meter(MeterName);
        Steps = _meter.CreateCounter<long>("peft.training.steps", "{step}", "Completed optimizer steps (skipped ones included).");
        SkippedSteps = _meter.CreateCounter<long>("peft.training.skipped_steps", "{step}", "Steps skipped for a non-finite loss or gradient.");
        Tokens = _meter.CreateCounter<long>("peft.training.tokens", "{token}", "Tokens (or examples) trained on.");
        Loss = _meter.CreateGauge<double>("peft.training.loss", null, "Loss of the last step.");
        LearningRate = _meter.CreateGauge<double>("peft.training.learning_rate", null, "Learning rate of the last step.");
        StepDuration = _meter.CreateHistogram<double>("peft.training.step.duration", "s", "Wall time of one training step.");
        Checkpoints = _meter.CreateCounter<long>("peft.training.checkpoints", "{checkpoint}", "Checkpoints written.");
        CheckpointDuration = _meter.CreateHistogram<double>("peft.training.checkpoint.duration", "s", "Wall time of one checkpoint write.");
    }

    /// <summary>Completed steps.</summary>
    public Counter<long> Steps { get; }

    /// <summary>Skipped steps.</summary>
    public Counter<long> SkippedSteps { get; }

    /// <summary>Tokens trained on.</summary>
    public Counter<long> Tokens { get; }

    /// <summary>Last loss.</summary>
    public Gauge<double> Loss { get; }

    /// <summary>Last learning rate.</summary>
    public Gauge<double> LearningRate { get; }

    /// <summary>Step durations in seconds.</summary>
    public Histogram<double> StepDuration { get; }

    /// <summary>Checkpoints written.</summary>
    public Counter<long> Checkpoints { get; }

    /// <summary>Checkpoint write durations in seconds.</summary>
    public Histogram<double> CheckpointDuration { get; }

    /// <summary>Disposes the meter when this instance created it.</summary>
    public void Dispose()
    {
        if (_ownsMeter)
        {
            _meter.Dispose();
        }
    }
}
