using Peft.Training;

namespace Peft.Hosting;

/// <summary>
/// Settings of a hosted training run, bound from configuration (appsettings.json, environment variables such as
/// <c>PeftTraining__LearningRate</c>, command-line arguments such as <c>--PeftTraining:LearningRate=3e-4</c>) under the
/// section <see cref="DefaultSectionName"/>. Validated when the host starts: a bad value stops it with a message
/// naming the setting.
/// </summary>
public sealed class PeftTrainingOptions
{
    /// <summary>The configuration section read by default.</summary>
    public const string DefaultSectionName = "PeftTraining";

    /// <summary>Where checkpoints (<c>checkpoints/step-N</c>), the final adapters (<c>adapters/NAME</c>) and
    /// <c>status.json</c> go. Required.</summary>
    public string OutputDirectory { get; set; } = string.Empty;

    /// <summary>The training data file, for the job to read; when set it must exist at start-up.</summary>
    public string? DataFile { get; set; }

    /// <summary>Device: <c>auto</c> (CUDA when available), <c>cpu</c> or <c>cuda</c>. Default <c>cpu</c>.</summary>
    public string Device { get; set; } = "cpu";

    /// <summary>Seed of the global generator, set before the job is created. Default 42.</summary>
    public int Seed { get; set; } = 42;

    /// <summary>Number of optimizer steps (&gt; 0). Required.</summary>
    public int TotalSteps { get; set; }

    /// <summary>Peak learning rate (&gt; 0). Default 1e-3.</summary>
    public double LearningRate { get; set; } = 1e-3;

    /// <summary>Linear warmup steps (0 to <see cref="TotalSteps"/>). Default 0.</summary>
    public int WarmupSteps { get; set; }

    /// <summary>Cosine floor as a fraction of <see cref="LearningRate"/>, in [0, 1]. Default 0.</summary>
    public double MinLearningRateRatio { get; set; }

    /// <summary>
    /// The optimizer, by name: <c>AdamW</c> (the default) or <c>SGD</c> (with <see cref="Momentum"/>); not
    /// case-sensitive. A checkpoint resumes only with the optimizer that wrote it.
    /// </summary>
    public string Optimizer { get; set; } = AdamWOptimizer.KindName;

    /// <summary>Weight decay (&gt;= 0): decoupled for AdamW, an L2 term on the gradient for SGD. Default 0.</summary>
    public double WeightDecay { get; set; }

    /// <summary>SGD's momentum factor, in [0, 1); ignored by AdamW. Default 0.9.</summary>
    public double Momentum { get; set; } = 0.9;

    /// <summary>Gradient clipping norm; &lt;= 0 disables clipping. Default 1.</summary>
    public double MaxGradNorm { get; set; } = 1.0;

    /// <summary>Log a progress line every this many steps (&gt;= 1). Default 10.</summary>
    public int LogEvery { get; set; } = 10;

    /// <summary>Write a checkpoint every this many steps (&gt;= 1). A checkpoint is also written at the end and on a
    /// graceful stop. Default 100.</summary>
    public int CheckpointEvery { get; set; } = 100;

    /// <summary>How many checkpoints to keep (&gt;= 1). Default 3.</summary>
    public int KeepCheckpoints { get; set; } = 3;

    /// <summary>Resume from the latest checkpoint in <see cref="OutputDirectory"/> when there is one. Default true.</summary>
    public bool Resume { get; set; } = true;

    /// <summary>What a NaN or infinite loss or gradient does: <c>Throw</c> (stop the run with an error; the last
    /// checkpoint stays the last good state) or <c>SkipStep</c>. Default <c>Throw</c>.</summary>
    public NonFiniteLossPolicy OnNonFiniteLoss { get; set; } = NonFiniteLossPolicy.Throw;

    /// <summary>The adapter to train: a name the model declares (PEFT's adapter name, e.g. <c>default</c>, or the
    /// <c>Name</c> of a <c>[Kronecker]</c>/<c>[PromptTune]</c> attribute). It becomes the only active adapter, so only its
    /// parameters (and <c>[Trainable]</c> members) train. Empty (default): the model's own active adapters.</summary>
    public string? Adapter { get; set; }

    /// <summary>Stop the host when the run ends (completed or failed). Default true; set false to keep a host with
    /// other services running.</summary>
    public bool StopHostWhenDone { get; set; } = true;

    /// <summary>Write TensorBoard event files (<c>train/loss</c>, <c>train/learning_rate</c>, <c>train/grad_norm</c> every
    /// step) to <c>tensorboard/</c> in <see cref="OutputDirectory"/>. Default true.</summary>
    public bool TensorBoard { get; set; } = true;

    /// <summary>Console progress: <c>Auto</c> (a single updating line when standard output is a terminal, log lines when
    /// it is redirected), <c>Line</c> or <c>Log</c>. Default <c>Auto</c>.</summary>
    public ConsoleProgressMode ConsoleProgress { get; set; } = ConsoleProgressMode.Auto;

    /// <summary>A copy of these settings.</summary>
    /// <returns>A new instance with the same values.</returns>
    public PeftTrainingOptions Clone() => (PeftTrainingOptions)MemberwiseClone();

    /// <summary>The names <see cref="Optimizer"/> accepts, as written in messages.</summary>
    public static IReadOnlyList<string> OptimizerNames { get; } = [AdamWOptimizer.KindName, SgdOptimizer.KindName];

    /// <summary>The trainer options these settings describe.</summary>
    /// <returns>A <see cref="TrainingOptions"/> (not validated here).</returns>
    /// <exception cref="ArgumentException"><see cref="Optimizer"/> is not one of <see cref="OptimizerNames"/>.</exception>
    public TrainingOptions ToTrainingOptions() => new()
    {
        TotalSteps = TotalSteps,
        LearningRate = LearningRate,
        WarmupSteps = WarmupSteps,
        MinLearningRateRatio = MinLearningRateRatio,
        Optimizer = OptimizerFactoryFor(Optimizer)
            ?? throw new ArgumentException($"{nameof(Optimizer)} must be {string.Join(" or ", OptimizerNames)}; got '{Optimizer}'.", nameof(Optimizer)),
        WeightDecay = WeightDecay,
        Momentum = Momentum,
        MaxGradNorm = MaxGradNorm,
        LogEvery = LogEvery,
        OnNonFiniteLoss = OnNonFiniteLoss,
        Seed = Seed,
    };

    /// <summary>The factory an optimizer name selects (not case-sensitive), or null for an unknown name.</summary>
    internal static OptimizerFactory? OptimizerFactoryFor(string? name) =>
        string.Equals(name, AdamWOptimizer.KindName, StringComparison.OrdinalIgnoreCase) ? Optimizers.AdamW
        : string.Equals(name, SgdOptimizer.KindName, StringComparison.OrdinalIgnoreCase) ? Optimizers.Sgd
        : null;
}
