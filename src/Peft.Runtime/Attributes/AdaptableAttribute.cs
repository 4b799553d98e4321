namespace Peft;

/// <summary>
/// Opts a partial module class in to configuration targeting without declaring any adapter on it: the generator emits
/// registration (<c>InitializePeft()</c>, as for the other attributes) and <see cref="IPeftTargetable"/>, so that
/// <see cref="PeftTargeting.ApplyTargets"/> can put adapters on its linear members by name (PEFT's
/// <c>target_modules</c>, <c>"all-linear"</c>). Classes with <see cref="LoRAAttribute"/>,
/// <see cref="KroneckerAttribute"/>, <see cref="PromptTuneAttribute"/>, <see cref="FreezeAttribute"/> or
/// <see cref="TrainableAttribute"/> members are targetable without it.
/// </summary>
/// <remarks>A targetable linear member must be a writable field or property typed <c>Module&lt;Tensor, Tensor&gt;</c>
/// (TorchSharp's <c>Linear</c> is sealed, so a field typed <c>Linear</c> cannot hold the adapter wrapper); in an
/// <c>[Adaptable]</c> class any other linear member is a compile error (PEFT0017).</remarks>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = false, Inherited = false)]
public sealed class AdaptableAttribute : Attribute
{
}
