using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace Peft.Hosting;

/// <summary>Registers a hosted training run.</summary>
public static class PeftTrainingHostingExtensions
{
    /// <summary>
    /// Registers <see cref="PeftTrainingService{TJob}"/> with <see cref="PeftTrainingOptions"/> bound from the
    /// configuration section <paramref name="sectionName"/> of <paramref name="builder"/> (appsettings.json,
    /// environment variables, command line) and validated at start-up.
    /// </summary>
    /// <typeparam name="TJob">The job (model and data); created once per run through dependency injection.</typeparam>
    /// <param name="builder">The host builder, e.g. from <c>Host.CreateApplicationBuilder(args)</c>.</param>
    /// <param name="sectionName">The configuration section. Default <see cref="PeftTrainingOptions.DefaultSectionName"/>.</param>
    /// <returns><paramref name="builder"/>.</returns>
    public static IHostApplicationBuilder AddPeftTraining<TJob>(this IHostApplicationBuilder builder, string sectionName = PeftTrainingOptions.DefaultSectionName)
        where TJob : class, ITrainingJob
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.AddPeftTraining<TJob>(builder.Configuration.GetSection(sectionName));
        return builder;
    }

    /// <summary>
    /// Registers <see cref="PeftTrainingService{TJob}"/> with <see cref="PeftTrainingOptions"/> bound from
    /// <paramref name="section"/> and validated when the host starts (<c>ValidateOnStart</c>): a bad value stops the
    /// host with an <see cref="OptionsValidationException"/> whose message names the setting.
    /// </summary>
    /// <typeparam name="TJob">The job (model and data).</typeparam>
    /// <param name="services">The service collection.</param>
    /// <param name="section">The configuration section holding the settings.</param>
    /// <returns><paramref name="services"/>.</returns>
    public static IServiceCollection AddPeftTraining<TJob>(this IServiceCollection services, IConfigurationSection section)
        where TJob : class, ITrainingJob
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(section);
        services.AddOptions<PeftTrainingOptions>()
            .Bind(section, binder => binder.ErrorOnUnknownConfiguration = true)
            .ValidateOnStart();
        services.AddSingleton<IValidateOptions<PeftTrainingOptions>>(new PeftTrainingOptionsValidator(section.Path));
        services.TryAddSingleton(sp => new PeftTrainingMetrics(sp.GetService<System.Diagnostics.Metrics.IMeterFactory>()));
        services.AddHostedService<PeftTrainingService<TJob>>();
        return services;
    }

    /// <summary>
    /// Registers a <see cref="TrainingQueue"/> (a hosted service and a singleton to submit jobs to) with
    /// <see cref="TrainingQueueOptions"/> bound from the configuration section <paramref name="sectionName"/>.
    /// </summary>
    /// <param name="builder">The host builder.</param>
    /// <param name="sectionName">The configuration section. Default <see cref="TrainingQueueOptions.DefaultSectionName"/>.</param>
    /// <returns><paramref name="builder"/>.</returns>
    public static IHostApplicationBuilder AddPeftTrainingQueue(this IHostApplicationBuilder builder, string sectionName = TrainingQueueOptions.DefaultSectionName)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.AddPeftTrainingQueue(builder.Configuration.GetSection(sectionName));
        return builder;
    }

    /// <summary>
    /// Registers a <see cref="TrainingQueue"/> with <see cref="TrainingQueueOptions"/> bound from
    /// <paramref name="section"/> and validated at start-up (<c>MaxConcurrency</c> &gt;= 1). Resolve
    /// <see cref="TrainingQueue"/> from the service provider to submit jobs.
    /// </summary>
    /// <param name="services">The service collection.</param>
    /// <param name="section">The configuration section holding the settings.</param>
    /// <returns><paramref name="services"/>.</returns>
    public static IServiceCollection AddPeftTrainingQueue(this IServiceCollection services, IConfigurationSection section)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(section);
        services.AddOptions<TrainingQueueOptions>()
            .Bind(section, binder => binder.ErrorOnUnknownConfiguration = true)
            .Validate(o => o.MaxConcurrency >= 1, $"{section.Path}:MaxConcurrency must be >= 1.")
            .ValidateOnStart();
        services.TryAddSingleton(sp => new PeftTrainingMetrics(sp.GetService<System.Diagnostics.Metrics.IMeterFactory>()));
        services.TryAddSingleton<TrainingQueue>();
        services.AddHostedService(sp => sp.GetRequiredService<TrainingQueue>());
        return services;
    }
}
