using System.Collections.Immutable;
using Peft.Generators.Model;
using Peft.Generators.Parsing;

namespace Peft.Generators.Methods.PromptTuning;

/// <summary><c>[PromptTune(virtualTokens, InitText)]</c> → <c>Peft.PromptTuningOptions</c>; V·dim parameters.</summary>
internal sealed class PromptTuneSpec : MethodSpec
{
    public override string Name => "PromptTune";

    public override string OptionsType => "global::Peft.PromptTuningOptions";

    public override LayerKind LayerKinds => LayerKind.Embedding;

    public override ImmutableArray<ArgumentSpec> Arguments { get; } = ImmutableArray.Create(
        ArgumentSpec.Int("virtualTokens", "VirtualTokens", 20),
        ArgumentSpec.String("InitText", "InitText", null));

    /// <summary>PEFT0014: the number of virtual tokens is not positive.</summary>
    public override void Validate(ValidationContext c)
    {
        int tokens = c.Adapter.Int("virtualTokens");
        if (tokens <= 0) c.Report(PeftDiagnosticIds.VirtualTokensNotPositive, "virtualTokens", Name, ValidationContext.Format(tokens));
    }

    public override bool IsCountable(AdapterModel adapter) => adapter.Int("virtualTokens") > 0;

    public override long? CountParameters(AdapterModel adapter, LayerInfo layer, long inFeatures, long outFeatures)
        => global::Peft.Generators.Rules.SaturatingMath.Multiply(adapter.Int("virtualTokens"), outFeatures);
}
