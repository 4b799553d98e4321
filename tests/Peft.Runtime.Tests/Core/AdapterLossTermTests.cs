using Peft.Serialization;
using Peft.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Peft.Runtime.Tests.Core;

/// <summary>
/// Adapter-supplied loss terms (<see cref="ILossTermAdapter"/>, <see cref="PeftModel.AdapterLossTerm"/>), with a test adapter
/// <c>y += g ⊙ (W x)</c> whose term is <c>c · Σ g²</c>: live adapters' terms are summed over layers (hand values), inactive and
/// disabled ones are left out, a model without such adapters gives 0, and the trainer adds the term to the objective.
/// </summary>
public class AdapterLossTermTests
{
    private sealed class TwoLayers : nn.Module<Tensor, Tensor>
    {
        private readonly AdaptedLinear fc1;
        private readonly AdaptedLinear fc2;

        public TwoLayers()
            : base(nameof(TwoLayers))
        {
            fc1 = AdaptedLinear.Wrap(nn.Linear(3, 2, dtype: ScalarType.Float64), "fc1");
            fc2 = AdaptedLinear.Wrap(nn.Linear(2, 2, dtype: ScalarType.Float64), "fc2");
            register_module("fc1", fc1);
            register_module("fc2", fc2);
        }

        public AdaptedLinear Fc1 => fc1;

        public AdaptedLinear Fc2 => fc2;

        public override Tensor forward(Tensor x)
        {
            using var h = fc1.forward(x);
            return fc2.forward(h);
        }
    }

    [Fact]
    public void LiveAdaptersTermsAreSummedOverLayers()
    {
        using var model = new TwoLayers();
        model.Fc1.WithAdapter("p", new PenaltyOptions(0.5));
        model.Fc2.WithAdapter("p", new PenaltyOptions(2.0));
        SetGain(model.Fc1, "p", 1.0, 2.0);
        SetGain(model.Fc2, "p", 3.0, 0.0);

        using var term = model.AdapterLossTerm();
        Assert.Equal(0.5 * (1 + 4) + 2.0 * 9, term.ToDouble(), 12);   // 20.5

        using (model.DisableAdapters())
        {
            using var disabled = model.AdapterLossTerm();
            Assert.Equal(0.0, disabled.ToDouble());
        }

        model.Fc2.WithAdapter("other", new PenaltyOptions(1.0));
        SetGain(model.Fc2, "other", 10.0, 10.0);
        using var withInactive = model.AdapterLossTerm();
        Assert.Equal(20.5, withInactive.ToDouble(), 12);             // "other" is not active

        model.Fc2.SetActiveAdapters("other");
        using var switched = model.AdapterLossTerm();
        Assert.Equal(2.5 + 200, switched.ToDouble(), 12);
    }

    [Fact]
    public void AModelWithoutLossTermAdaptersGivesZero()
    {
        using var model = new TwoLayers();
        model.Fc1.WithAdapter("default", new LoRAOptions(Rank: 1));
        using var term = model.AdapterLossTerm();
        Assert.Equal(0.0, term.ToDouble());
        Assert.Equal(1, term.numel());
    }

    [Fact]
    public void TheTrainerAddsTheTermAndItsGradient()
    {
        using var model = new TwoLayers();
        model.Fc1.WithAdapter("p", new PenaltyOptions(0.5));
        var gain = SetGain(model.Fc1, "p", 1.0, 2.0);
        using var x = torch.ones(4, 3, dtype: ScalarType.Float64);
        var options = new TrainingOptions
        {
            TotalSteps = 1, LearningRate = 0.1, Optimizer = Optimizers.Sgd, Momentum = 0, MaxGradNorm = 100, Regularizers = new[] { model.AdapterLossTerms() },
        };
        using var trainer = new AdapterTrainer(model.TrainableParameters().ToList(), options);
        var progress = trainer.TrainStep(() => torch.zeros(Array.Empty<long>(), dtype: ScalarType.Float64));
        Assert.Equal(2.5, progress.RegularizerLoss, 12);
        Assert.Equal(Math.Sqrt(5), progress.GradNorm, 12);
        // Only the term has a gradient here: d(0.5 Σ g²)/dg = g, so one SGD step of rate η gives (1 − η) g.
        double eta = progress.LearningRate;
        Assert.True(eta > 0);
        TensorAssert.Close(torch.tensor(new[] { 1 - eta, 2 * (1 - eta) }, dtype: ScalarType.Float64), gain, 1e-12);
    }

    private static Parameter SetGain(AdaptedLinear layer, string name, params double[] values)
    {
        var gain = ((PenaltyAdapter)layer.GetAdapter(name)).Gain;
        using var noGrad = torch.no_grad();
        using var source = torch.tensor(values, dtype: ScalarType.Float64);
        gain.copy_(source);
        return gain;
    }

    private sealed record PenaltyOptions(double Weight) : PeftAdapterOptions
    {
        public override PeftMethod Method => PenaltyMethod.Instance;

        public override void Validate(string adapterName, PeftLayerInfo layer)
        {
        }

        public override PeftAdapter CreateAdapter(string adapterName, PeftLayerInfo layer) => new PenaltyAdapter(adapterName, layer, this);
    }

    /// <summary><c>y += g ⊙ (W x)</c>-like additive update with a trainable gain g [out] (zero at init); term c · Σ g².</summary>
    private sealed class PenaltyAdapter : PeftAdapter, IAdditiveAdapter, ILossTermAdapter
    {
        private readonly PenaltyOptions _options;

        public PenaltyAdapter(string name, PeftLayerInfo layer, PenaltyOptions options)
            : base(name, layer)
        {
            _options = options;
            Gain = CreateParameter("gain", layer.OutFeatures);
            using var noGrad = torch.no_grad();
            Gain.zero_();
        }

        public Parameter Gain { get; }

        public override PeftAdapterOptions Config => _options;

        public void AddTo(Tensor input, Tensor output)
        {
            using var summed = input.sum(dim: -1, keepdim: true);
            using var update = summed * Gain;
            output.add_(update);
        }

        public Tensor DeltaWeight() => Gain.unsqueeze(1).expand(OutFeatures, InFeatures).clone();

        public Tensor LossTerm() => Gain.pow(2).sum() * _options.Weight;

        public override IEnumerable<(string PeftName, Parameter Parameter)> PeftTensors()
        {
            yield return ("gain", Gain);
        }
    }

    private sealed class PenaltyMethod : PeftMethod
    {
        public static readonly PenaltyMethod Instance = new();

        public override string Name => "Penalty";

        public override string PeftType => "TEST_PENALTY";

        public override PeftLayerKind LayerKinds => PeftLayerKind.Linear;

        public override Type AttributeType => typeof(PenaltyOptions);

        public override Type OptionsType => typeof(PenaltyOptions);

        public override IReadOnlyList<string> TensorNames { get; } = new[] { "gain" };

        public override PeftAdapterOptions ReadOptions(AdapterConfig config, string? modulePath) => throw new NotSupportedException();

        public override void WriteConfig(AdapterConfigWriter writer) => throw new NotSupportedException();
    }
}
